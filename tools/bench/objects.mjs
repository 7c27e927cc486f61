#!/usr/bin/env node
// Taskcluster object API benchmark (on demand, not a test), driven by the real taskcluster-client
// (Hawk auth; `taskcluster.upload()` / `taskcluster.download()`, as apps/object-api/test/tc-client.mjs):
//  - small objects: BENCH_SMALL objects of 4 KiB (distinct content, `dataInline`), BENCH_CONCURRENCY
//    in flight, uploaded then downloaded (`getUrl`); prints uploads/s, downloads/s, p50/p99 latency,
//    object-api CPU-seconds and peak RSS; every download's sha256 must equal the upload's;
//  - one large object (BENCH_SIZE_MIB): upload (`putUrl`) and download (`getUrl`) through Ferry,
//    against a bare node:http server (tools/bench/bare-http.mjs: PUT to a fsynced file, GET streams
//    it back), both driven by the same plain node:http PUT and GET of the same bytes (Ferry's
//    between createUpload/finishUpload and after startDownload), then once more through the
//    client's helpers (which add client-side sha256 + sha512), alternating bare / Ferry / helpers
//    in one run; prints upload and download MB/s, the ratios of medians, server CPU-seconds per
//    GiB, peak server RSS, client CPU.
// Client data comes from memory (a 16 MiB random block, repeated, for the large object). Before
// each upload measurement the previous output is deleted and memory left to settle
// (BENCH_SETTLE_MS, default 15000), as docs/benchmarking.md explains.
//
// Usage: npm run bench:objects
//   (env: BENCH_SMALL=1000 BENCH_CONCURRENCY=8 BENCH_SIZE_MIB=1024 BENCH_ROUNDS=3 BENCH_SETTLE_MS=15000)
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import taskcluster from 'taskcluster-client';
import {
  GiB,
  MiB,
  filesUnder,
  freePort,
  hwmMiB,
  inParallel,
  measure,
  median,
  percentile,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
} from './lib.mjs';

const SMALL = Number(process.env.BENCH_SMALL ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const FERRY_ENV = JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}');
const SMALL_SIZE = 4096;
const CHUNK = MiB; // the client's write size, Ferry and bare alike (divides the 16 MiB block)
const PROJECT = 'bench';
const CREDENTIALS = { clientId: 'dev', accessToken: 'dev-secret' }; // development mode (no FERRY_CLIENTS)

const work = join(root, 'tmp', 'bench');
const dataDir = join(work, 'objects');
const bareDir = join(work, 'objects-bare');
// BENCH_DIST: another build's dist/ (e.g. of a git worktree) to compare against
const dist = join(process.env.BENCH_DIST ?? join(root, 'dist'), 'apps', 'object-api', 'main.js');

const fmt = (x, d = 1) => x.toFixed(d);
const sha256Hex = (b) => createHash('sha256').update(b).digest('hex');
const block = randomBytes(16 * MiB);

/** The large object's bytes, CHUNK at a time: subarrays of the repeated block (nothing allocated). */
function* largeChunks() {
  for (let off = 0; off < SIZE; off += CHUNK) {
    const at = off % block.length;
    yield block.subarray(at, at + Math.min(CHUNK, SIZE - off));
  }
}
const largeSource = () => Readable.from(largeChunks(), { objectMode: false });

/** A Writable that only hashes (sha256) and counts what it is given. */
function hashSink() {
  const sha = createHash('sha256');
  let bytes = 0;
  const sink = new Writable({
    write(chunk, _enc, cb) {
      sha.update(chunk);
      bytes += chunk.length;
      cb();
    },
  });
  return { sink, done: () => ({ bytes, sha256: sha.digest('hex') }) };
}

/** Runs `fn(i)` for i in 0..count-1, `CONCURRENCY` at a time. */
const pool = (count, fn) => inParallel(count, CONCURRENCY, fn);

/** Measures `fn` with lib.mjs measure (server `pid`) and adds this process's CPU-seconds (the client). */
async function measureBoth(pid, fn) {
  const c0 = process.cpuUsage();
  const m = await measure(pid, fn);
  const c = process.cpuUsage(c0);
  return { ...m, clientCpuSeconds: (c.user + c.system) / 1e6 };
}

// --- plain node:http client for the bare server ---------------------------------------------------

/** One request; resolves with the response (body not read). `body` is piped from a Readable. */
function send(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, agent: false, headers }, resolve);
    req.on('error', reject);
    if (body) pipeline(body, req).catch(reject);
    else req.end();
  });
}

async function text(res) {
  const chunks = [];
  for await (const c of res) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

// --- processes and cleanup -----------------------------------------------------------------------

// --- main ----------------------------------------------------------------------------------------

async function main(onCleanup) {
  const knobs = {
    BENCH_SMALL: SMALL,
    BENCH_CONCURRENCY: CONCURRENCY,
    BENCH_SIZE_MIB: SIZE / MiB,
    BENCH_ROUNDS: ROUNDS,
    BENCH_SETTLE_MS: SETTLE_MS,
  };
  console.log(
    `command: ${Object.entries(knobs)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}${process.env.BENCH_FERRY_ENV ? ` BENCH_FERRY_ENV='${process.env.BENCH_FERRY_ENV}'` : ''} node tools/bench/objects.mjs`,
  );
  console.log(
    `node ${process.version}, ${cpus().length} CPUs; taskcluster-client ${JSON.parse(readFileSync(join(root, 'node_modules', 'taskcluster-client', 'package.json'), 'utf8')).version}; ` +
      `client data in memory (large: 16 MiB random block repeated, ${CHUNK / MiB} MiB writes); MB = 1e6 bytes`,
  );

  if (!existsSync(dist)) {
    console.log('building object-api...');
    execFileSync('npx', ['nx', 'run', 'object-api:build', '--output-style=static'], { cwd: root, stdio: 'inherit' });
  }

  for (const path of [dataDir, bareDir]) rmSync(path, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(bareDir, { recursive: true });

  // Client data and its digests, before any timing.
  const smallData = randomBytes(SMALL * SMALL_SIZE);
  const small = (i) => smallData.subarray(i * SMALL_SIZE, (i + 1) * SMALL_SIZE);
  const smallSha = Array.from({ length: SMALL }, (_, i) => sha256Hex(small(i)));
  const largeHash = createHash('sha256');
  for (const c of largeChunks()) largeHash.update(c);
  const largeSha = largeHash.digest('hex');

  const redis = await startRedis();
  onCleanup(() => redis.stop());
  const apiPort = await freePort();
  const barePort = await freePort();
  const ferryEnv = {
    ...FERRY_ENV,
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: 'bench',
    FERRY_DATA_DIR: dataDir,
    FERRY_OBJECT_PORT: String(apiPort),
    FERRY_LOG_LEVEL: 'warn',
    // development mode (dev / dev-secret, scope *) even if the calling shell configures clients
    FERRY_CLIENTS: '',
    FERRY_CLIENTS_FILE: '',
  };
  const apiProc = await startProcess([dist], ferryEnv, () =>
    send(`http://127.0.0.1:${apiPort}/readyz`).then((res) => {
      res.resume();
      return res.statusCode === 200;
    }),
  );
  onCleanup(() => stopWithin(apiProc));
  const bareProc = await startProcess([join(root, 'tools', 'bench', 'bare-http.mjs'), String(barePort), bareDir], {}, () =>
    send(`http://127.0.0.1:${barePort}/`).then((res) => {
      res.resume();
      return true;
    }),
  );
  onCleanup(() => stopWithin(bareProc));

  // retries: 0 everywhere, so that a failure aborts the bench instead of hiding in its timings
  const object = new taskcluster.Object({ rootUrl: `http://127.0.0.1:${apiPort}`, credentials: CREDENTIALS, retries: 0 });
  const expires = () => taskcluster.fromNow('1 day');

  /** Deletes what earlier measurements wrote (Ferry's published blobs, the bare files), then idles. */
  async function settle() {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(bareDir, { recursive: true, force: true });
    mkdirSync(bareDir, { recursive: true });
    await sleep(SETTLE_MS);
  }

  // --- part 1: small objects ---------------------------------------------------------------------

  async function smallObjects() {
    await settle();
    const upLat = [];
    const downLat = [];
    const ups = await measure(apiProc.pid, () =>
      pool(SMALL, async (i) => {
        const data = small(i);
        const t = process.hrtime.bigint();
        await taskcluster.upload({
          projectId: PROJECT,
          name: `bench/small/${i}`,
          contentType: 'application/octet-stream',
          contentLength: data.length,
          expires: expires(),
          object,
          streamFactory: async () => Readable.from([data]),
          retries: 0,
        });
        upLat.push(Number(process.hrtime.bigint() - t) / 1e6);
      }),
    );
    const downs = await measure(apiProc.pid, () =>
      pool(SMALL, async (i) => {
        const h = hashSink();
        const t = process.hrtime.bigint();
        await taskcluster.download({ name: `bench/small/${i}`, object, streamFactory: async () => h.sink, retries: 0 });
        downLat.push(Number(process.hrtime.bigint() - t) / 1e6);
        const got = h.done();
        if (got.bytes !== SMALL_SIZE || got.sha256 !== smallSha[i]) {
          throw new Error(
            `bench/small/${i}: downloaded ${got.bytes} bytes with sha256 ${got.sha256}, uploaded ${SMALL_SIZE} with ${smallSha[i]}`,
          );
        }
      }),
    );
    console.log(
      `\n${SMALL} objects of ${SMALL_SIZE / 1024} KiB, ${CONCURRENCY} in flight (upload: dataInline; download: getUrl; every sha256 checked):`,
    );
    console.table([
      {
        op: 'upload',
        perSecond: fmt(SMALL / ups.seconds),
        p50ms: fmt(median(upLat), 2),
        p99ms: fmt(percentile(upLat, 99), 2),
        apiCpuS: fmt(ups.cpuSeconds, 2),
        apiCpuMsPerOp: fmt((ups.cpuSeconds * 1000) / SMALL, 2),
        apiPeakRssMiB: fmt(ups.peakRssMiB),
      },
      {
        op: 'download',
        perSecond: fmt(SMALL / downs.seconds),
        p50ms: fmt(median(downLat), 2),
        p99ms: fmt(percentile(downLat, 99), 2),
        apiCpuS: fmt(downs.cpuSeconds, 2),
        apiCpuMsPerOp: fmt((downs.cpuSeconds * 1000) / SMALL, 2),
        apiPeakRssMiB: fmt(downs.peakRssMiB),
      },
    ]);
  }

  if (SMALL > 0) await smallObjects();

  // --- part 2: one large object, Ferry against bare --------------------------------------------------

  /** Figures of one transfer: MB/s, server CPU-s per GiB and peak RSS, client CPU-s per GiB. */
  const figures = (m) => ({
    mbps: SIZE / m.seconds / 1e6,
    cpuPerGiB: (m.cpuSeconds * GiB) / SIZE,
    peakRssMiB: m.peakRssMiB,
    clientCpuPerGiB: (m.clientCpuSeconds * GiB) / SIZE,
  });

  /** Checks what a download delivered into a hashSink against the large object. */
  function checkLarge(label, h) {
    const got = h.done();
    if (got.bytes !== SIZE || got.sha256 !== largeSha)
      throw new Error(`${label}: ${got.bytes} bytes with sha256 ${got.sha256}, expected ${SIZE} with ${largeSha}`);
  }

  /** One plain PUT of the large object's bytes (the same client for bare and Ferry). */
  async function putLarge(label, url, headers) {
    const res = await send(url, { method: 'PUT', headers, body: largeSource() });
    const body = await text(res);
    if (res.statusCode !== 200) throw new Error(`${label} PUT: ${res.statusCode} ${body}`);
  }

  /** One plain GET of the large object into a sha256 sink, checked. */
  async function getLarge(label, url) {
    const res = await send(url);
    if (res.statusCode !== 200) throw new Error(`${label} GET: ${res.statusCode} ${await text(res)}`);
    const h = hashSink();
    await pipeline(res, h.sink);
    checkLarge(`${label} GET`, h);
  }

  async function bareRound(round) {
    await settle();
    const url = `http://127.0.0.1:${barePort}/large-${round}`;
    const up = await measureBoth(bareProc.pid, () =>
      putLarge('bare', url, { 'content-type': 'application/octet-stream', 'content-length': SIZE }),
    );
    const sizes = filesUnder(bareDir);
    if (sizes.length !== 1 || sizes[0] !== SIZE)
      throw new Error(`bare: the PUT left ${JSON.stringify(sizes)}, expected one file of ${SIZE} bytes`);
    const down = await measureBoth(bareProc.pid, () => getLarge('bare', url));
    return { up: figures(up), down: figures(down) };
  }

  /**
   * Ferry's putUrl and getUrl with the same plain node:http client as the bare server: createUpload,
   * one PUT of the bytes to the putUrl, finishUpload declaring their sha256; startDownload, one GET
   * of the getUrl into the same sha256 sink. The client does exactly the bare round's work.
   */
  async function ferryRound(round) {
    await settle();
    const name = `bench/large/${round}-${Date.now()}`;
    const uploadId = taskcluster.slugid();
    const phases = {};
    const up = await measureBoth(apiProc.pid, async () => {
      const t0 = performance.now();
      const created = await object.createUpload(name, {
        projectId: PROJECT,
        uploadId,
        expires: expires(),
        proposedUploadMethods: { putUrl: { contentType: 'application/octet-stream', contentLength: SIZE } },
      });
      const { url, headers } = created.uploadMethod.putUrl ?? {};
      if (!url) throw new Error(`createUpload offered no putUrl: ${JSON.stringify(created)}`);
      const t1 = performance.now();
      await putLarge('Ferry', url, headers);
      const t2 = performance.now();
      await object.finishUpload(name, { projectId: PROJECT, uploadId, hashes: { sha256: largeSha } });
      Object.assign(phases, { createMs: t1 - t0, putMs: t2 - t1, finishMs: performance.now() - t2 });
    });
    const blobs = filesUnder(join(dataDir, 'blobs'));
    if (blobs.length !== 1 || blobs[0] !== SIZE)
      throw new Error(`after the upload the blob tree holds ${JSON.stringify(blobs)}, expected one blob of ${SIZE} bytes`);
    const down = await measureBoth(apiProc.pid, async () => {
      const started = await object.startDownload(name, { acceptDownloadMethods: { getUrl: true } });
      if (started.method !== 'getUrl') throw new Error(`startDownload answered ${JSON.stringify(started)}`);
      await getLarge('Ferry', started.url);
    });
    return { up: figures(up), down: figures(down), phases };
  }

  /** The same object through the client library's helpers, which also hash on the client (sha256 and sha512). */
  async function helpersRound(round) {
    await settle();
    const name = `bench/large-helpers/${round}-${Date.now()}`;
    const up = await measureBoth(apiProc.pid, () =>
      taskcluster.upload({
        projectId: PROJECT,
        name,
        contentType: 'application/octet-stream',
        contentLength: SIZE,
        expires: expires(),
        object,
        streamFactory: async () => largeSource(),
        retries: 0,
      }),
    );
    const h = hashSink();
    const down = await measureBoth(apiProc.pid, () =>
      taskcluster.download({ name, object, streamFactory: async () => h.sink, retries: 0 }),
    );
    checkLarge('Ferry download (helpers)', h);
    return { up: figures(up), down: figures(down) };
  }

  const line = (f) =>
    `${fmt(f.mbps)} MB/s, ${fmt(f.cpuPerGiB, 2)} CPU-s/GiB, peak RSS ${fmt(f.peakRssMiB)} MiB, client ${fmt(f.clientCpuPerGiB, 2)} CPU-s/GiB`;
  const results = { bare: [], ferry: [], helpers: [] };
  console.log(
    `\nOne ${fmt(SIZE / MiB, 0)} MiB object (upload, then download of it; alternating bare / Ferry / Ferry through the helpers):`,
  );
  for (let round = 0; round < ROUNDS; round++) {
    const b = await bareRound(round);
    results.bare.push(b);
    console.log(`bare    round ${round + 1}: upload ${line(b.up)}; download ${line(b.down)}`);
    const f = await ferryRound(round);
    results.ferry.push(f);
    const { createMs, putMs, finishMs } = f.phases;
    console.log(
      `ferry   round ${round + 1}: upload ${line(f.up)} (createUpload ${fmt(createMs)} ms, PUT ${fmt(putMs)} ms, finishUpload ${fmt(finishMs)} ms); download ${line(f.down)}`,
    );
    const t = await helpersRound(round);
    results.helpers.push(t);
    console.log(`helpers round ${round + 1}: upload ${line(t.up)}; download ${line(t.down)}`);
  }

  const med = (who, dir, key) => median(results[who].map((r) => r[dir][key]));
  const peak = (who, dir) => Math.max(...results[who].map((r) => r[dir].peakRssMiB));
  const ratio = (who, dir) => med(who, dir, 'mbps') / med('bare', dir, 'mbps');
  const rows = [];
  for (const who of ['ferry', 'helpers']) {
    for (const dir of ['up', 'down']) {
      rows.push({
        op: `${dir === 'up' ? 'upload' : 'download'}${who === 'helpers' ? ' (helpers)' : ''}`,
        ferryMBps: fmt(med(who, dir, 'mbps')),
        bareMBps: fmt(med('bare', dir, 'mbps')),
        ratio: fmt(ratio(who, dir), 2),
        ferryCpuPerGiB: fmt(med(who, dir, 'cpuPerGiB'), 2),
        bareCpuPerGiB: fmt(med('bare', dir, 'cpuPerGiB'), 2),
        ferryPeakRssMiB: fmt(peak(who, dir)),
        barePeakRssMiB: fmt(peak('bare', dir)),
        ferryClientCpuPerGiB: fmt(med(who, dir, 'clientCpuPerGiB'), 2),
        bareClientCpuPerGiB: fmt(med('bare', dir, 'clientCpuPerGiB'), 2),
      });
    }
  }
  console.log(
    `\n${fmt(SIZE / MiB, 0)} MiB object (medians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}, alternating bare / Ferry / helpers; ` +
      'bare: one node:http PUT, one GET, the download hashed (sha256); ' +
      'Ferry: createUpload + the same PUT to its putUrl + finishUpload, startDownload + the same GET of its getUrl; ' +
      'helpers: taskcluster.upload() / taskcluster.download(), which also hash sha256 and sha512 on the client; ' +
      'CPU of the server, client = this process):',
  );
  console.table(rows);
  console.log(
    `lifetime peak RSS (VmHWM, includes start-up and the small objects): object-api ${fmt(hwmMiB(apiProc.pid))} MiB, bare ${fmt(hwmMiB(bareProc.pid))} MiB`,
  );
  console.log(
    `targets: Ferry putUrl/getUrl against bare >= 0.80 (upload ${fmt(ratio('ferry', 'up'), 2)}, download ${fmt(ratio('ferry', 'down'), 2)}; through the helpers ${fmt(ratio('helpers', 'up'), 2)}, ${fmt(ratio('helpers', 'down'), 2)})`,
  );
}

runBenchmark(main, { paths: [dataDir, bareDir], work });
