#!/usr/bin/env node
// Multipart REST API benchmark (on demand, not a test), for each size (1 GiB and 4 GiB by default):
//  - the upload in 5 MiB and 64 MiB parts, 4 parts in flight, through Ferry's multipart-api
//    (start, presigned URL batch, PUT each part + add it) and through a bare node:http server that
//    writes each PUT to a file and fsyncs it (tools/bench/bare-http.mjs), also one that computes each
//    part's md5 on the way, alternating bare / bare+md5 / Ferry in one run; prints upload MB/s,
//    server CPU-seconds per GiB, peak server RSS, ratios of medians. Ferry's multipart-api also
//    advances the whole-file md5 and sha256 as the parts land (in the background of each add);
//  - complete→COMPLETED: the time from `complete`, called right after the last add, to its 200
//    COMPLETED answer (multipart-api hashes what is left, usually the last parts in flight, checks
//    the md5 and publishes; with more than FERRY_MULTIPART_INLINE_COMPLETE_BYTES left the worker's
//    job does it), how much was left to hash when complete was called, the CPU of multipart-api and
//    of the worker meanwhile, beside one in-process md5+sha256 pass over the same bytes read from a
//    page-cached file (what assembling at complete costs when nothing was hashed before).
// Other processes share the cores: each round says how busy all CPUs were while it ran (from
// /proc/stat) and how much of that was neither the server nor this client.
// Client data comes from memory (a 16 MiB random block, repeated; each part is copied out of it as
// it is sent, for every server alike). Before each measurement the previous output is deleted and
// memory left to settle (BENCH_SETTLE_MS, default 15000), as docs/benchmarking.md explains.
//
// Usage: npm run bench:multipart
//   (env: BENCH_SIZES_MIB=1024,4096 BENCH_PART_MIB=5,64 BENCH_ROUNDS=3 BENCH_PARALLEL=4 BENCH_SETTLE_MS=15000
//    BENCH_BARE=1 (0: Ferry only) BENCH_FERRY_ENV='{...}' BENCH_DIST=<another build's dist>)
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
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
  procSample,
  request,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
  dist,
} from './lib.mjs';

const SIZES = (process.env.BENCH_SIZES_MIB ?? process.env.BENCH_SIZE_MIB ?? '1024,4096').split(',').map((s) => Number(s) * MiB);
const PART_SIZES = (process.env.BENCH_PART_MIB ?? '5,64').split(',').map((s) => Number(s) * MiB);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 4);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const BARE = process.env.BENCH_BARE !== '0';
const FERRY_ENV = JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}');
const HASH_CHUNK = 4 * MiB;
const BLOCK = 16 * MiB;

const work = join(root, 'tmp', 'bench');
const dataDir = join(work, 'multipart');
const bareDir = join(work, 'bare');
const hashFile = join(work, 'hash.bin');
// BENCH_DIST: another build's dist/ (e.g. of a git worktree) to compare against

const fmt = (x, d = 1) => x.toFixed(d);
const md5Hex = (b) => createHash('md5').update(b).digest('hex');

/** Runs `fn(partNumber)` for parts 1..count, `PARALLEL` at a time. */
const eachPart = (count, fn) => inParallel(count, PARALLEL, (i) => fn(i + 1));

// --- client data and machine load ------------------------------------------------------------------

/**
 * `size` bytes of a 16 MiB random block repeated, without holding them: `subarray(a, b)` copies the
 * range out of the block (as a client reads a part from its file), so that 4 GiB need no 4 GiB buffer.
 */
function repeated(block, size) {
  return {
    length: size,
    subarray(start, end = size) {
      const out = Buffer.allocUnsafe(Math.max(0, Math.min(end, size) - start));
      for (let at = 0; at < out.length;) {
        const from = (start + at) % block.length;
        at += block.copy(out, at, from, Math.min(block.length, from + out.length - at));
      }
      return out;
    },
  };
}

/** All CPUs' busy and total time so far (/proc/stat, in ticks of 1/100 s), and this process's CPU (the client). */
function machineSample() {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  const idle = cpu[3] + cpu[4]; // idle + iowait
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  const client = process.cpuUsage();
  return { busy: (total - idle) / 100, total: total / 100, client: (client.user + client.system) / 1e6 };
}

/**
 * How busy all CPUs were between two samples (0..1), and of that what was neither the server
 * (`serverCpuSeconds`) nor this client: other processes on the machine.
 */
function busyBetween(a, b, serverCpuSeconds) {
  const total = b.total - a.total;
  const busy = b.busy - a.busy;
  return { busy: busy / total, others: Math.max(0, busy - serverCpuSeconds - (b.client - a.client)) / total };
}

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
    BENCH_SIZES_MIB: SIZES.map((s) => s / MiB).join(','),
    BENCH_PART_MIB: PART_SIZES.map((p) => p / MiB).join(','),
    BENCH_ROUNDS: ROUNDS,
    BENCH_PARALLEL: PARALLEL,
    BENCH_SETTLE_MS: SETTLE_MS,
    BENCH_BARE: BARE ? 1 : 0,
  };
  console.log(
    `command: ${Object.entries(knobs)
      .map(([k, v]) => `${k}=${v}`)
      .join(
        ' ',
      )}${process.env.BENCH_FERRY_ENV ? ` BENCH_FERRY_ENV='${process.env.BENCH_FERRY_ENV}'` : ''}${process.env.BENCH_DIST ? ` BENCH_DIST=${process.env.BENCH_DIST}` : ''} node tools/bench/multipart.mjs`,
  );
  console.log(
    `node ${process.version}, ${cpus().length} CPUs, load average at start ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; client data in memory (16 MiB random block repeated); MB = 1e6 bytes`,
  );

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

  const block = randomBytes(BLOCK);
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
  const state = new IORedis(redis.url);
  onCleanup(() => state.disconnect());

  /** Deletes what earlier measurements wrote (Ferry's published blobs, the bare files), then idles. */
  async function settle() {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(bareDir, { recursive: true, force: true });
    mkdirSync(bareDir, { recursive: true });
    await sleep(SETTLE_MS);
  }

  /** How far the digests of the upload being completed got (the one UPLOADING upload): [parts hashed, parts] (0 for builds without them). */
  async function digestProgress() {
    for (const key of await state.keys('bench:up:{mp_*}')) {
      if (!/^bench:up:\{[^}]+\}$/.test(key)) continue;
      const [st, hashed] = await state.hmget(key, 'state', 'dgParts');
      if (st === 'open') return [Number(hashed ?? 0), await state.strlen(`${key}:parts`)];
    }
    return [NaN, NaN];
  }

  /** One round against a bare server: `which` is 'plain' or 'md5' (each part's md5 computed, as ETag). */
  async function bareRound(size, data, partSize, partMd5s, round, which = 'plain') {
    await settle();
    const count = Math.ceil(size / partSize);
    const agent = keepAlive(PARALLEL);
    const { port, proc } = bare[which];
    try {
      const m0 = machineSample();
      const m = await measure(proc.pid, () =>
        eachPart(count, async (n) => {
          const res = await request(`http://127.0.0.1:${port}/${partSize / MiB}-${round}-${n}`, {
            method: 'PUT',
            body: data.subarray((n - 1) * partSize, Math.min(size, n * partSize)),
            agent,
          });
          if (res.status !== 200) throw new Error(`bare PUT part ${n}: ${res.status} ${res.text}`);
          if (which === 'md5' && res.headers.etag !== `"${partMd5s[n - 1]}"`) throw new Error(`bare md5 of part ${n}: ${res.headers.etag}`);
        }),
      );
      const load = busyBetween(m0, machineSample(), m.cpuSeconds);
      const sizes = filesUnder(bareDir);
      const total = sizes.reduce((a, b) => a + b, 0);
      if (sizes.length !== count || total !== size)
        throw new Error(`bare: ${sizes.length} files of ${total} bytes, expected ${count} of ${size}`);
      return {
        mbps: size / m.seconds / 1e6,
        cpuPerGiB: (m.cpuSeconds * GiB) / size,
        sysPerGiB: (m.sysSeconds * GiB) / size,
        peakRssMiB: m.peakRssMiB,
        load,
      };
    } finally {
      agent.destroy();
    }
  }

  async function ferryRound(size, data, contentMD5Hex, partSize, partMd5s, round) {
    await settle();
    const agent = keepAlive(PARALLEL);
    try {
      const fileName = `bench-${size / MiB}MiB-${partSize / MiB}MiB-${round}-${Date.now()}.bin`;
      const upload = multipartUpload({ base, agent, data, partSize, parallel: PARALLEL, contentMD5Hex, partMd5s, fileName });
      await upload.start();
      // Upload: first PUT to last add, sampling multipart-api.
      const m0 = machineSample();
      const up = await measure(apiProc.pid, () => upload.upload());
      const load = busyBetween(m0, machineSample(), up.cpuSeconds);
      // Complete, called at once: what was left to hash, then complete until its 200 COMPLETED,
      // sampling multipart-api (where it normally happens) and the worker (when more was left).
      const [hashed] = await digestProgress();
      const worker0 = procSample(workerProc.pid);
      const asm = await measure(apiProc.pid, () => upload.complete());
      const workerCpu = procSample(workerProc.pid).cpuSeconds - worker0.cpuSeconds;
      const blobs = filesUnder(join(dataDir, 'blobs'));
      if (blobs.length !== 1 || blobs[0] !== size)
        throw new Error(`after complete the blob tree holds ${JSON.stringify(blobs)}, expected one blob of ${size} bytes`);
      return {
        mbps: size / up.seconds / 1e6,
        cpuPerGiB: (up.cpuSeconds * GiB) / size,
        sysPerGiB: (up.sysSeconds * GiB) / size,
        peakRssMiB: up.peakRssMiB,
        load,
        leftMiB: (size - Math.min(size, hashed * partSize)) / MiB,
        completeSeconds: asm.seconds,
        completeApiCpu: asm.cpuSeconds,
        completeWorkerCpu: workerCpu,
        apiPeakRssDuringComplete: asm.peakRssMiB,
      };
    } finally {
      agent.destroy();
    }
  }

  /** One md5+sha256 pass over the same bytes as a page-cached file, timed in this process. */
  async function hashBaseline(size, data, contentMD5Hex) {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(bareDir, { recursive: true, force: true });
    mkdirSync(bareDir, { recursive: true });
    const out = openSync(hashFile, 'w');
    for (let at = 0; at < size; at += BLOCK) writeSync(out, data.subarray(at, Math.min(size, at + BLOCK)));
    fsyncSync(out); // no writeback left to disturb the timing
    closeSync(out);
    readPass(hashFile, false); // warm the page cache
    await sleep(SETTLE_MS);
    const t0 = process.hrtime.bigint();
    const digests = readPass(hashFile, true);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    rmSync(hashFile, { force: true });
    if (digests.md5 !== contentMD5Hex) throw new Error('hash baseline: md5 of hash.bin differs from the data');
    return seconds;
  }

  const pct = (x) => `${(x * 100).toFixed(0)}%`;
  const loadText = (l) => `CPUs ${pct(l.busy)} busy, ${pct(l.others)} by other processes`;
  const rows = [];
  for (const size of SIZES) {
    const data = repeated(block, size);
    // the content's md5 and every part's md5 (per part size), all before any timing
    const whole = createHash('md5');
    for (let at = 0; at < size; at += BLOCK) whole.update(data.subarray(at, Math.min(size, at + BLOCK)));
    const contentMD5Hex = whole.digest('hex');
    const sizeMiB = size / MiB;
    let hashSeconds;
    for (const partSize of PART_SIZES) {
      const pm = partSize / MiB;
      const count = Math.ceil(size / partSize);
      const partMd5s = Array.from({ length: count }, (_, i) => md5Hex(data.subarray(i * partSize, Math.min(size, (i + 1) * partSize))));
      const results = { bare: [], bareMd5: [], ferry: [] };
      for (let round = 0; round < ROUNDS; round++) {
        if (BARE) {
          const b = await bareRound(size, data, partSize, partMd5s, round);
          results.bare.push(b);
          console.log(
            `bare     ${sizeMiB} MiB, ${pm} MiB parts, round ${round + 1}: ${fmt(b.mbps)} MB/s, ${fmt(b.cpuPerGiB, 2)} CPU-s/GiB (${fmt(b.sysPerGiB, 2)} in the kernel), peak RSS ${fmt(b.peakRssMiB)} MiB; ${loadText(b.load)}`,
          );
          const m = await bareRound(size, data, partSize, partMd5s, round, 'md5');
          results.bareMd5.push(m);
          console.log(
            `bare+md5 ${sizeMiB} MiB, ${pm} MiB parts, round ${round + 1}: ${fmt(m.mbps)} MB/s, ${fmt(m.cpuPerGiB, 2)} CPU-s/GiB, peak RSS ${fmt(m.peakRssMiB)} MiB; ${loadText(m.load)}`,
          );
        }
        const f = await ferryRound(size, data, contentMD5Hex, partSize, partMd5s, round);
        results.ferry.push(f);
        console.log(
          `ferry    ${sizeMiB} MiB, ${pm} MiB parts, round ${round + 1}: upload ${fmt(f.mbps)} MB/s, ${fmt(f.cpuPerGiB, 2)} CPU-s/GiB (${fmt(f.sysPerGiB, 2)} in the kernel), API peak RSS ${fmt(f.peakRssMiB)} MiB, ${loadText(f.load)}; ` +
            `left to hash at complete ${fmt(f.leftMiB, 0)} MiB, complete→COMPLETED ${fmt(f.completeSeconds, 3)} s (CPU: API ${fmt(f.completeApiCpu, 2)} s, worker ${fmt(f.completeWorkerCpu, 2)} s)`,
        );
      }
      hashSeconds ??= await hashBaseline(size, data, contentMD5Hex);
      const f = median(results.ferry.map((r) => r.mbps));
      const c = median(results.ferry.map((r) => r.completeSeconds));
      const row = {
        size: `${sizeMiB} MiB`,
        part: `${pm} MiB`,
        ferryMBps: fmt(f),
        completeS: fmt(c, 3),
        completeMaxS: fmt(Math.max(...results.ferry.map((r) => r.completeSeconds)), 3),
        leftMiB: fmt(median(results.ferry.map((r) => r.leftMiB)), 0),
        hashS: fmt(hashSeconds, 2),
        ferryCpuPerGiB: fmt(median(results.ferry.map((r) => r.cpuPerGiB)), 2),
        apiPeakRssMiB: fmt(Math.max(...results.ferry.map((r) => r.peakRssMiB))),
        busy: pct(median(results.ferry.map((r) => r.load.busy))),
        othersBusy: pct(median(results.ferry.map((r) => r.load.others))),
      };
      if (BARE) {
        const b = median(results.bare.map((r) => r.mbps));
        const bm = median(results.bareMd5.map((r) => r.mbps));
        Object.assign(row, {
          bareMBps: fmt(b),
          bareMd5MBps: fmt(bm),
          vsBare: fmt(f / b, 2),
          vsBareMd5: fmt(f / bm, 2),
          bareCpuPerGiB: fmt(median(results.bare.map((r) => r.cpuPerGiB)), 2),
          bareMd5CpuPerGiB: fmt(median(results.bareMd5.map((r) => r.cpuPerGiB)), 2),
        });
      }
      rows.push(row);
    }
    console.log(
      `hash     ${sizeMiB} MiB: md5+sha256, one in-process pass (one thread, 4 MiB reads) over the page-cached file: ${fmt(hashSeconds, 2)} s (${fmt(size / hashSeconds / 1e6)} MB/s)`,
    );
  }

  console.log(
    `\n${PARALLEL} parts in flight (medians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}${BARE ? ', alternating bare / bare+md5 / Ferry' : ''}; ` +
      'upload = first PUT to last add, CPU of the receiving server; complete = complete, called right after the last add, to its 200 COMPLETED; ' +
      'left = MiB not yet hashed when complete was called; hash = one in-process md5+sha256 pass; busy = all CPUs during the upload, others = neither the server nor the client):',
  );
  console.table(rows);
  console.log(
    `lifetime peak RSS (VmHWM, includes start-up): multipart-api ${fmt(hwmMiB(apiProc.pid))} MiB, assembler-worker ${fmt(hwmMiB(workerProc.pid))} MiB; load average at the end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `targets: complete→COMPLETED <= 0.5 s (${rows.map((r) => `${r.size}/${r.part}: ${r.completeS} s`).join(', ')})` +
      (BARE
        ? `; upload >= 0.80x bare (${rows.map((r) => `${r.size}/${r.part}: ${r.vsBare}`).join(', ')}) and >= 0.90x bare+md5 (${rows.map((r) => `${r.size}/${r.part}: ${r.vsBareMd5}`).join(', ')})`
        : '') +
      `; API peak RSS <= 200 MiB (${rows.map((r) => `${r.size}/${r.part}: ${r.apiPeakRssMiB}`).join(', ')})`,
  );
}

runBenchmark(main, { paths: [dataDir, bareDir, hashFile], work });
