#!/usr/bin/env node
// Multipart REST API benchmark (on demand, not a test):
//  - 1 GiB uploaded in 5 MiB and 64 MiB parts, 4 parts in flight, through Ferry's multipart-api
//    (start, presigned URL batch, PUT each part + add it) and through a bare node:http server that
//    writes each PUT to a file and fsyncs it (tools/bench/bare-http.mjs), alternating bare / Ferry
//    in one run; prints upload MB/s, server CPU-seconds per GiB, peak server RSS, ratio of medians;
//  - Ferry's assembly: the time from `complete` to its 200 COMPLETED answer (the assembler-worker
//    hashes the staged file and publishes it), beside one in-process md5+sha256 pass over the same
//    bytes read from a page-cached file, and the worker's peak RSS and CPU.
// Client data comes from memory (a 16 MiB random block, repeated). Before each measurement the
// previous output is deleted and memory left to settle (BENCH_SETTLE_MS, default 15000), as
// docs/benchmarking.md explains.
//
// Usage: npm run bench:multipart
//   (env: BENCH_SIZE_MIB=1024 BENCH_PART_MIB=5,64 BENCH_ROUNDS=3 BENCH_PARALLEL=4 BENCH_SETTLE_MS=15000)
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { keepAlive, multipartUpload } from './ferry-clients.mjs';
import {
  GiB,
  MiB,
  filesUnder,
  freePort,
  hwmMiB,
  inParallel,
  measure,
  median,
  request,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
} from './lib.mjs';

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const PART_SIZES = (process.env.BENCH_PART_MIB ?? '5,64').split(',').map((s) => Number(s) * MiB);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 4);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const FERRY_ENV = JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}');
const HASH_CHUNK = 4 * MiB;

const work = join(root, 'tmp', 'bench');
const dataDir = join(work, 'multipart');
const bareDir = join(work, 'bare');
const hashFile = join(work, 'hash.bin');
// BENCH_DIST: another build's dist/ (e.g. of a git worktree) to compare against
const dist = (app) => join(process.env.BENCH_DIST ?? join(root, 'dist'), 'apps', app, 'main.js');

const fmt = (x, d = 1) => x.toFixed(d);
const md5Hex = (b) => createHash('md5').update(b).digest('hex');

/** Runs `fn(partNumber)` for parts 1..count, `PARALLEL` at a time. */
const eachPart = (count, fn) => inParallel(count, PARALLEL, (i) => fn(i + 1));

// --- processes and cleanup -----------------------------------------------------------------------

const readyz = (port) => () => request(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200);

// --- the hashing baseline ------------------------------------------------------------------------

/** Reads the file once in 4 MiB chunks; with `hash`, updates an md5 and a sha256 (one thread). */
function readPass(path, hash) {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(HASH_CHUNK);
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, HASH_CHUNK, null);
      if (n === 0) break;
      if (hash) {
        md5.update(buf.subarray(0, n));
        sha.update(buf.subarray(0, n));
      }
    }
  } finally {
    closeSync(fd);
  }
  return hash ? { md5: md5.digest('hex'), sha256: sha.digest('hex') } : undefined;
}

// --- main ----------------------------------------------------------------------------------------

async function main(onCleanup) {
  const knobs = {
    BENCH_SIZE_MIB: SIZE / MiB,
    BENCH_PART_MIB: PART_SIZES.map((p) => p / MiB).join(','),
    BENCH_ROUNDS: ROUNDS,
    BENCH_PARALLEL: PARALLEL,
    BENCH_SETTLE_MS: SETTLE_MS,
  };
  console.log(
    `command: ${Object.entries(knobs)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}${process.env.BENCH_FERRY_ENV ? ` BENCH_FERRY_ENV='${process.env.BENCH_FERRY_ENV}'` : ''} node tools/bench/multipart.mjs`,
  );
  console.log(`node ${process.version}, ${cpus().length} CPUs; client data in memory (16 MiB random block repeated); MB = 1e6 bytes`);

  if (!existsSync(dist('multipart-api')) || !existsSync(dist('assembler-worker'))) {
    console.log('building multipart-api and assembler-worker...');
    execFileSync('npx', ['nx', 'run-many', '-t', 'build', '-p', 'multipart-api', 'assembler-worker', '--output-style=static'], {
      cwd: root,
      stdio: 'inherit',
    });
  }

  for (const path of [dataDir, bareDir, hashFile]) rmSync(path, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(bareDir, { recursive: true });

  // Client data, its md5, and every part's md5 (per part size), all before any timing.
  const block = randomBytes(16 * MiB);
  const data = Buffer.allocUnsafe(SIZE);
  for (let off = 0; off < SIZE; off += block.length) block.copy(data, off, 0, Math.min(block.length, SIZE - off));
  const contentMD5Hex = md5Hex(data);
  const partMd5s = new Map(
    PART_SIZES.map((partSize) => {
      const count = Math.ceil(SIZE / partSize);
      return [partSize, Array.from({ length: count }, (_, i) => md5Hex(data.subarray(i * partSize, Math.min(SIZE, (i + 1) * partSize))))];
    }),
  );
  const part = (partSize, n) => data.subarray((n - 1) * partSize, Math.min(SIZE, n * partSize));

  const redis = await startRedis();
  onCleanup(() => redis.stop());
  const apiPort = await freePort();
  const workerPort = await freePort();
  const barePort = await freePort();
  const md5Port = await freePort();
  const ferryEnv = {
    ...FERRY_ENV,
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: 'bench',
    FERRY_DATA_DIR: dataDir,
    FERRY_MULTIPART_PORT: String(apiPort),
    FERRY_WORKER_PORT: String(workerPort),
    FERRY_LOG_LEVEL: 'warn',
    FERRY_MULTIPART_COMPLETE_WAIT_MS: '600000',
    // development mode (token dev-secret) even if the calling shell configures clients
    FERRY_CLIENTS: '',
    FERRY_CLIENTS_FILE: '',
  };
  const apiProc = await startProcess([dist('multipart-api')], ferryEnv, readyz(apiPort));
  onCleanup(() => stopWithin(apiProc));
  const workerProc = await startProcess([dist('assembler-worker')], ferryEnv, readyz(workerPort));
  onCleanup(() => stopWithin(workerProc));
  const bareProc = await startProcess([join(root, 'tools', 'bench', 'bare-http.mjs'), String(barePort), bareDir], {}, () =>
    request(`http://127.0.0.1:${barePort}/`).then(() => true),
  );
  onCleanup(() => stopWithin(bareProc));
  const md5Proc = await startProcess([join(root, 'tools', 'bench', 'bare-http.mjs'), String(md5Port), bareDir, 'md5'], {}, () =>
    request(`http://127.0.0.1:${md5Port}/`).then(() => true),
  );
  onCleanup(() => stopWithin(md5Proc));
  const bare = { plain: { port: barePort, proc: bareProc }, md5: { port: md5Port, proc: md5Proc } };
  const base = `http://127.0.0.1:${apiPort}`;

  /** Deletes what earlier measurements wrote (Ferry's published blobs, the bare files), then idles. */
  async function settle() {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(bareDir, { recursive: true, force: true });
    mkdirSync(bareDir, { recursive: true });
    await sleep(SETTLE_MS);
  }

  /** One round against a bare server: `which` is 'plain' or 'md5' (each part's md5 computed, as ETag). */
  async function bareRound(partSize, round, which = 'plain') {
    await settle();
    const count = Math.ceil(SIZE / partSize);
    const agent = keepAlive(PARALLEL);
    const { port, proc } = bare[which];
    try {
      const m = await measure(proc.pid, () =>
        eachPart(count, async (n) => {
          const res = await request(`http://127.0.0.1:${port}/${partSize / MiB}-${round}-${n}`, {
            method: 'PUT',
            body: part(partSize, n),
            agent,
          });
          if (res.status !== 200) throw new Error(`bare PUT part ${n}: ${res.status} ${res.text}`);
          if (which === 'md5' && res.headers.etag !== `"${partMd5s.get(partSize)[n - 1]}"`)
            throw new Error(`bare md5 of part ${n}: ${res.headers.etag}`);
        }),
      );
      const sizes = filesUnder(bareDir);
      const total = sizes.reduce((a, b) => a + b, 0);
      if (sizes.length !== count || total !== SIZE)
        throw new Error(`bare: ${sizes.length} files of ${total} bytes, expected ${count} of ${SIZE}`);
      return {
        mbps: SIZE / m.seconds / 1e6,
        cpuPerGiB: (m.cpuSeconds * GiB) / SIZE,
        sysPerGiB: (m.sysSeconds * GiB) / SIZE,
        peakRssMiB: m.peakRssMiB,
      };
    } finally {
      agent.destroy();
    }
  }

  async function ferryRound(partSize, round) {
    await settle();
    const agent = keepAlive(PARALLEL);
    try {
      const fileName = `bench-${partSize / MiB}MiB-${round}-${Date.now()}.bin`;
      const upload = multipartUpload({
        base,
        agent,
        data,
        partSize,
        parallel: PARALLEL,
        contentMD5Hex,
        partMd5s: partMd5s.get(partSize),
        fileName,
      });
      await upload.start();
      // Upload: first PUT to last add, sampling multipart-api.
      const up = await measure(apiProc.pid, () => upload.upload());
      // Assembly: complete (waits) until its 200 COMPLETED, sampling the assembler-worker.
      const asm = await measure(workerProc.pid, () => upload.complete());
      const blobs = filesUnder(join(dataDir, 'blobs'));
      if (blobs.length !== 1 || blobs[0] !== SIZE)
        throw new Error(`after complete the blob tree holds ${JSON.stringify(blobs)}, expected one blob of ${SIZE} bytes`);
      return {
        mbps: SIZE / up.seconds / 1e6,
        cpuPerGiB: (up.cpuSeconds * GiB) / SIZE,
        sysPerGiB: (up.sysSeconds * GiB) / SIZE,
        peakRssMiB: up.peakRssMiB,
        completeSeconds: asm.seconds,
        workerCpuPerGiB: (asm.cpuSeconds * GiB) / SIZE,
        workerPeakRssMiB: asm.peakRssMiB,
      };
    } finally {
      agent.destroy();
    }
  }

  /** One md5+sha256 pass over the same bytes as a page-cached file, timed in this process. */
  async function hashBaseline() {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(bareDir, { recursive: true, force: true });
    mkdirSync(bareDir, { recursive: true });
    writeFileSync(hashFile, data);
    const fd = openSync(hashFile, 'r');
    fsyncSync(fd); // no writeback left to disturb the timing
    closeSync(fd);
    readPass(hashFile, false); // warm the page cache
    await sleep(SETTLE_MS);
    const t0 = process.hrtime.bigint();
    const digests = readPass(hashFile, true);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    rmSync(hashFile, { force: true });
    if (digests.md5 !== contentMD5Hex) throw new Error('hash baseline: md5 of hash.bin differs from the data');
    return seconds;
  }

  const rows = [];
  for (const partSize of PART_SIZES) {
    const pm = partSize / MiB;
    const results = { bare: [], bareMd5: [], ferry: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const b = await bareRound(partSize, round);
      results.bare.push(b);
      console.log(
        `bare  ${pm} MiB parts round ${round + 1}: ${fmt(b.mbps)} MB/s, ${fmt(b.cpuPerGiB, 2)} CPU-s/GiB (${fmt(b.sysPerGiB, 2)} in the kernel), peak RSS ${fmt(b.peakRssMiB)} MiB`,
      );
      const m = await bareRound(partSize, round, 'md5');
      results.bareMd5.push(m);
      console.log(
        `bare+md5 ${pm} MiB parts round ${round + 1}: ${fmt(m.mbps)} MB/s, ${fmt(m.cpuPerGiB, 2)} CPU-s/GiB, peak RSS ${fmt(m.peakRssMiB)} MiB`,
      );
      const f = await ferryRound(partSize, round);
      results.ferry.push(f);
      console.log(
        `ferry ${pm} MiB parts round ${round + 1}: upload ${fmt(f.mbps)} MB/s, ${fmt(f.cpuPerGiB, 2)} CPU-s/GiB (${fmt(f.sysPerGiB, 2)} in the kernel), API peak RSS ${fmt(f.peakRssMiB)} MiB; ` +
          `complete→COMPLETED ${fmt(f.completeSeconds, 2)} s, worker ${fmt(f.workerCpuPerGiB, 2)} CPU-s/GiB, worker peak RSS ${fmt(f.workerPeakRssMiB)} MiB`,
      );
    }
    const hashSeconds = await hashBaseline();
    console.log(
      `hash  ${pm} MiB parts: md5+sha256, one in-process pass (one thread, 4 MiB reads) over the page-cached file: ${fmt(hashSeconds, 2)} s (${fmt(SIZE / hashSeconds / 1e6)} MB/s)`,
    );
    const f = median(results.ferry.map((r) => r.mbps));
    const s = median(results.bare.map((r) => r.mbps));
    const sm = median(results.bareMd5.map((r) => r.mbps));
    const c = median(results.ferry.map((r) => r.completeSeconds));
    rows.push({
      part: `${pm} MiB`,
      ferryMBps: fmt(f),
      bareMBps: fmt(s),
      bareMd5MBps: fmt(sm),
      uploadRatio: fmt(f / s, 2),
      vsBareMd5: fmt(f / sm, 2),
      completeS: fmt(c, 2),
      hashS: fmt(hashSeconds, 2),
      completeRatio: fmt(c / hashSeconds, 2),
      apiPeakRssMiB: fmt(Math.max(...results.ferry.map((r) => r.peakRssMiB))),
      workerPeakRssMiB: fmt(Math.max(...results.ferry.map((r) => r.workerPeakRssMiB))),
      ferryCpuPerGiB: fmt(median(results.ferry.map((r) => r.cpuPerGiB)), 2),
      bareCpuPerGiB: fmt(median(results.bare.map((r) => r.cpuPerGiB)), 2),
      bareMd5CpuPerGiB: fmt(median(results.bareMd5.map((r) => r.cpuPerGiB)), 2),
      workerCpuPerGiB: fmt(median(results.ferry.map((r) => r.workerCpuPerGiB)), 2),
    });
  }

  console.log(
    `\n${fmt(SIZE / MiB, 0)} MiB uploads, ${PARALLEL} parts in flight (medians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}, alternating bare / bare+md5 / Ferry; ` +
      'upload = first PUT to last add, CPU of the receiving server; complete = complete→COMPLETED, CPU of the worker; hash = one in-process md5+sha256 pass):',
  );
  console.table(rows);
  console.log(
    `lifetime peak RSS (VmHWM, includes start-up): multipart-api ${fmt(hwmMiB(apiProc.pid))} MiB, assembler-worker ${fmt(hwmMiB(workerProc.pid))} MiB`,
  );
  console.log(
    `targets: upload >= 0.80x bare (${rows.map((r) => `${r.part}: ${r.uploadRatio}`).join(', ')}) and >= 0.90x bare+md5 (${rows.map((r) => `${r.part}: ${r.vsBareMd5}`).join(', ')}); ` +
      `complete/hash <= 1.30 (${rows.map((r) => `${r.part}: ${r.completeRatio}`).join(', ')}); ` +
      `peak RSS <= 200 MiB (API ${rows.map((r) => `${r.part}: ${r.apiPeakRssMiB}`).join(', ')}; worker ${rows.map((r) => `${r.part}: ${r.workerPeakRssMiB}`).join(', ')})`,
  );
}

runBenchmark(main, { paths: [dataDir, bareDir, hashFile], work });
