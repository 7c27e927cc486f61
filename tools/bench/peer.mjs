#!/usr/bin/env node
// Ferry against its peer (on demand, not a test): the same bytes (BENCH_SIZE_MIB, default 1 GiB)
// uploaded in one run, alternating. Two faces, chosen by BENCH_FACES (default `object,tus`):
//
// `object`: Ferry's own protocols against tus in one request, through
//  - the tus reference server, @tus/server + @tus/file-store (tools/bench/tus-peer.mjs), driven by
//    tus-js-client: in one request, and in 8 MiB chunks (one PATCH each);
//  - Ferry's object API: createUpload, one PUT to the putUrl, finishUpload declaring the sha256,
//    which Ferry verifies before publishing;
//  - Ferry's multipart API: start, presigned URLs, BENCH_PARALLEL parts in flight (8 MiB parts),
//    each added with its md5, complete until COMPLETED (the worker assembles and verifies); its
//    MB/s counts the whole cycle, start to COMPLETED (bench:multipart times the phases apart);
//  - Ferry's ByteStream Write, 1 MiB messages.
// It prints each Ferry face's ratio to tus in one request.
//
// `tus`: tus against tus, the same client (tus-client.mjs, raw node:http) uploading to Ferry's
// multipart-api under /files/ and to @tus/server, creation then
//  - one PATCH of the whole file ("one request"),
//  - PATCHes of 8 MiB one after the other (as tus-js-client with chunkSize 8 MiB);
//  - (`replicas`, only when asked) the same 8 MiB PATCHes alternating between two processes of each
//    server on one store (Ferry: two multipart-api on one Redis and data directory; the peer: two
//    @tus/server on one directory), as a load balancer may spread them: each PATCH's writer
//    continues the digests the previous one saved in the session (Ferry re-hashed the whole prefix
//    on every other PATCH before);
// it prints per variant Ferry's and the peer's MB/s, their ratio, each server's CPU and peak RSS.
//
// Prints per round and as medians: MB/s, server CPU-seconds per GiB, the server's peak RSS during
// the upload. Before each measurement the previous output is deleted and memory left to settle
// (BENCH_SETTLE_MS), as docs/benchmarking.md explains.
//
// Usage: npm run bench:peer
//   (env: BENCH_FACES=object,tus BENCH_SIZE_MIB=1024 BENCH_ROUNDS=3 BENCH_PARALLEL=4 BENCH_SETTLE_MS=15000)
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import * as tus from 'tus-js-client';
import { TOKEN, byteStreamWrite, keepAlive, multipartUpload, objectPut } from './ferry-clients.mjs';
import { tusAgent, tusUpload as rawTusUpload } from './tus-client.mjs';
import {
  GiB,
  MiB,
  filesUnder,
  freePort,
  hwmMiB,
  listening,
  measure,
  median,
  request,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
  dist,
} from './lib.mjs';

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 4);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const FERRY_ENV = JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}');
const FACES = (process.env.BENCH_FACES ?? 'object,tus')
  .split(',')
  .map((f) => f.trim())
  .filter(Boolean);
for (const f of FACES) if (!['object', 'tus'].includes(f)) throw new Error(`BENCH_FACES: unknown face ${f} (object, tus)`);
/** The tus face's variants: `one` (one PATCH), `chunks` (8 MiB PATCHes), `replicas` (8 MiB PATCHes over two processes). */
const TUS_VARIANTS = (process.env.BENCH_TUS_VARIANTS ?? 'one,chunks')
  .split(',')
  .map((f) => f.trim())
  .filter(Boolean);
for (const v of TUS_VARIANTS)
  if (!['one', 'chunks', 'replicas'].includes(v)) throw new Error(`BENCH_TUS_VARIANTS: unknown variant ${v} (one, chunks, replicas)`);
const REPLICAS = FACES.includes('tus') && TUS_VARIANTS.includes('replicas');
const PEER_FSYNC = process.env.BENCH_PEER_FSYNC === '1';
const TUS_CHUNK = 8 * MiB;
const PART = 8 * MiB;
const GRPC_CHUNK = MiB;

const work = join(root, 'tmp', 'bench');
const dataDir = join(work, 'peer-ferry');
const tusDir = join(work, 'peer-tus');
const version = (pkg) => JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')).version;
const fmt = (x, d = 1) => x.toFixed(d);
const hex = (algo, data) => createHash(algo).update(data).digest('hex');
const readyz = (port) => () => request(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200);

/** One tus upload of `data` with tus-js-client; `chunkSize` Infinity: one PATCH. */
function tusUpload(endpoint, data, chunkSize) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(data, {
      endpoint,
      chunkSize,
      retryDelays: null, // a failure aborts the bench instead of hiding in its timings
      metadata: { filename: 'bench.bin' },
      onError: reject,
      onSuccess: () => resolve(upload.url),
    });
    upload.start();
  });
}

async function main(onCleanup) {
  const knobs = {
    BENCH_FACES: FACES.join(','),
    BENCH_TUS_VARIANTS: TUS_VARIANTS.join(','),
    ...(PEER_FSYNC ? { BENCH_PEER_FSYNC: 1 } : {}),
    BENCH_SIZE_MIB: SIZE / MiB,
    BENCH_ROUNDS: ROUNDS,
    BENCH_PARALLEL: PARALLEL,
    BENCH_SETTLE_MS: SETTLE_MS,
  };
  console.log(
    `command: ${Object.entries(knobs)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')} node tools/bench/peer.mjs`,
  );
  console.log(
    `node ${process.version}, ${cpus().length} CPUs; @tus/server ${version('@tus/server')}, @tus/file-store ${version('@tus/file-store')}, ` +
      `tus-js-client ${version('tus-js-client')} (object face), raw node:http tus client (tus face); ` +
      `peer ${PEER_FSYNC ? 'fdatasyncs each PATCH (BENCH_PEER_FSYNC=1)' : 'as shipped (never fsyncs; Ferry syncs every 8 MiB / 50 ms)'}; client data in memory (16 MiB random block repeated); MB = 1e6 bytes`,
  );
  const objectFace = FACES.includes('object');
  const tusFace = FACES.includes('tus');
  // the tus face needs multipart-api alone (a tus upload publishes in its last PATCH, no worker)
  const apps = objectFace ? ['object-api', 'multipart-api', 'assembler-worker', 'ingest-grpc'] : ['multipart-api'];
  if (apps.some((app) => !existsSync(dist(app)))) {
    console.log(`building ${apps.join(', ')}...`);
    execFileSync('npx', ['nx', 'run-many', '-t', 'build', '-p', ...apps, '--output-style=static'], { cwd: root, stdio: 'inherit' });
  }
  for (const path of [dataDir, tusDir]) {
    rmSync(path, { recursive: true, force: true });
    mkdirSync(path, { recursive: true });
  }

  // The client's bytes and their digests, before any timing.
  const block = randomBytes(16 * MiB);
  const data = Buffer.allocUnsafe(SIZE);
  for (let off = 0; off < SIZE; off += block.length) block.copy(data, off, 0, Math.min(block.length, SIZE - off));
  const sha256 = hex('sha256', data);
  const contentMD5Hex = hex('md5', data);
  const partMd5s = Array.from({ length: Math.ceil(SIZE / PART) }, (_, i) =>
    hex('md5', data.subarray(i * PART, Math.min(SIZE, (i + 1) * PART))),
  );

  const redis = await startRedis();
  onCleanup(() => redis.stop());
  const ports = {
    object: await freePort(),
    multipart: await freePort(),
    worker: await freePort(),
    grpc: await freePort(),
    tus: await freePort(),
    multipart2: await freePort(),
    tus2: await freePort(),
  };
  const env = {
    ...FERRY_ENV,
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: 'bench',
    FERRY_DATA_DIR: dataDir,
    FERRY_OBJECT_PORT: String(ports.object),
    FERRY_MULTIPART_PORT: String(ports.multipart),
    FERRY_WORKER_PORT: String(ports.worker),
    FERRY_GRPC_PORT: String(ports.grpc),
    FERRY_GRPC_METRICS_PORT: '0',
    FERRY_CACHE_HTTP_PORT: '0',
    FERRY_LOG_LEVEL: 'warn',
    FERRY_MULTIPART_COMPLETE_WAIT_MS: '600000',
    // development mode (dev / dev-secret, scope *) even if the calling shell configures clients
    FERRY_CLIENTS: '',
    FERRY_CLIENTS_FILE: '',
  };
  const start = async (args, environment, ready) => {
    const child = await startProcess(args, environment, ready);
    onCleanup(() => stopWithin(child));
    return child;
  };
  const procs = {
    ...(objectFace ? { object: await start([dist('object-api')], env, readyz(ports.object)) } : {}),
    multipart: await start([dist('multipart-api')], env, readyz(ports.multipart)),
    ...(objectFace
      ? {
          worker: await start([dist('assembler-worker')], env, readyz(ports.worker)),
          grpc: await start([dist('ingest-grpc')], env, () => listening(ports.grpc)),
        }
      : {}),
    tus: await start(
      [join(root, 'tools', 'bench', 'tus-peer.mjs'), String(ports.tus), tusDir],
      { BENCH_PEER_FSYNC: PEER_FSYNC ? '1' : '' },
      () => listening(ports.tus),
    ),
    ...(REPLICAS
      ? {
          multipart2: await start(
            [dist('multipart-api')],
            { ...env, FERRY_MULTIPART_PORT: String(ports.multipart2) },
            readyz(ports.multipart2),
          ),
          tus2: await start(
            [join(root, 'tools', 'bench', 'tus-peer.mjs'), String(ports.tus2), tusDir],
            { BENCH_PEER_FSYNC: PEER_FSYNC ? '1' : '' },
            () => listening(ports.tus2),
          ),
        }
      : {}),
  };

  /** Deletes what earlier measurements wrote (Ferry's blobs, tus's files), then idles. */
  async function settle() {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(tusDir, { recursive: true, force: true });
    mkdirSync(tusDir, { recursive: true });
    await sleep(SETTLE_MS);
  }

  /** Checks that exactly one file of the full size landed under `dir`. */
  function oneFile(label, dir) {
    const sizes = filesUnder(dir).filter((s) => s === SIZE);
    if (sizes.length !== 1)
      throw new Error(`${label}: expected one file of ${SIZE} bytes under ${dir}, found ${JSON.stringify(filesUnder(dir))}`);
  }

  const multipartBase = `http://127.0.0.1:${ports.multipart}`;
  const agent = keepAlive(PARALLEL + 2);
  const tusEndpoint = `http://127.0.0.1:${ports.tus}/files`;
  const ferryTusEndpoint = `${multipartBase}/files`;
  const auth = { authorization: `Bearer ${TOKEN}` }; // sent to both servers (the peer ignores it)
  /** The tus face: the same raw client, one connection, to Ferry and to the peer. */
  const tusRun = (endpoint, chunkSize, origins) => () => {
    const agent = tusAgent();
    return rawTusUpload({ endpoint, data, chunkSize, headers: auth, agent, origins }).finally(() => agent.destroy());
  };
  const origin = (port) => `http://127.0.0.1:${port}`;
  const objectEntries = [
    {
      key: 'tus',
      label: 'tus, one request',
      pid: procs.tus.pid,
      run: () => tusUpload(tusEndpoint, data, Infinity),
      check: () => oneFile('tus', tusDir),
    },
    {
      key: 'object',
      label: 'Ferry object PUT',
      pid: procs.object?.pid,
      run: () =>
        objectPut({ base: `http://127.0.0.1:${ports.object}`, name: `bench/peer/${Date.now()}`, data, sha256, slugid: taskcluster.slugid }),
      check: () => oneFile('object', join(dataDir, 'blobs')),
    },
    {
      key: 'tus8',
      label: `tus, ${TUS_CHUNK / MiB} MiB chunks`,
      pid: procs.tus.pid,
      run: () => tusUpload(tusEndpoint, data, TUS_CHUNK),
      check: () => oneFile('tus chunks', tusDir),
    },
    {
      key: 'multipart',
      label: `Ferry multipart, ${PARALLEL} x ${PART / MiB} MiB, start to COMPLETED`,
      pid: procs.multipart.pid,
      run: async () => {
        const upload = multipartUpload({
          base: multipartBase,
          agent,
          data,
          partSize: PART,
          parallel: PARALLEL,
          contentMD5Hex,
          partMd5s,
          fileName: 'bench.bin',
        });
        await upload.start();
        await upload.upload();
        const t = performance.now();
        await upload.complete();
        return { completeSeconds: (performance.now() - t) / 1000 };
      },
      check: () => oneFile('multipart', join(dataDir, 'blobs')),
    },
    {
      key: 'bytestream',
      label: `Ferry ByteStream, ${GRPC_CHUNK / MiB} MiB messages`,
      pid: procs.grpc?.pid,
      run: async () => {
        const committed = await byteStreamWrite({ port: ports.grpc, data, chunk: GRPC_CHUNK });
        if (committed !== SIZE) throw new Error(`ByteStream committed ${committed} of ${SIZE} bytes`);
      },
      check: () => oneFile('bytestream', join(dataDir, 'blobs')),
    },
  ];
  const tusEntries = [
    {
      variant: 'one',
      key: 'ferryTus1',
      label: 'tus face: Ferry, one request',
      pid: procs.multipart.pid,
      run: tusRun(ferryTusEndpoint, Infinity),
      check: () => oneFile('Ferry tus', join(dataDir, 'blobs')),
    },
    {
      variant: 'one',
      key: 'peerTus1',
      label: 'tus face: @tus/server, one request',
      pid: procs.tus.pid,
      run: tusRun(tusEndpoint, Infinity),
      check: () => oneFile('peer tus', tusDir),
    },
    {
      variant: 'chunks',
      key: 'ferryTus8',
      label: `tus face: Ferry, ${TUS_CHUNK / MiB} MiB chunks`,
      pid: procs.multipart.pid,
      run: tusRun(ferryTusEndpoint, TUS_CHUNK),
      check: () => oneFile('Ferry tus chunks', join(dataDir, 'blobs')),
    },
    {
      variant: 'chunks',
      key: 'peerTus8',
      label: `tus face: @tus/server, ${TUS_CHUNK / MiB} MiB chunks`,
      pid: procs.tus.pid,
      run: tusRun(tusEndpoint, TUS_CHUNK),
      check: () => oneFile('peer tus chunks', tusDir),
    },
    {
      variant: 'replicas',
      key: 'ferryTusR',
      label: `tus face: Ferry, ${TUS_CHUNK / MiB} MiB chunks over 2 replicas`,
      pid: [procs.multipart.pid, procs.multipart2?.pid],
      run: tusRun(ferryTusEndpoint, TUS_CHUNK, [origin(ports.multipart), origin(ports.multipart2)]),
      check: () => oneFile('Ferry tus replicas', join(dataDir, 'blobs')),
    },
    {
      variant: 'replicas',
      key: 'peerTusR',
      label: `tus face: @tus/server, ${TUS_CHUNK / MiB} MiB chunks over 2 processes`,
      pid: [procs.tus.pid, procs.tus2?.pid],
      run: tusRun(tusEndpoint, TUS_CHUNK, [origin(ports.tus), origin(ports.tus2)]),
      check: () => oneFile('peer tus replicas', tusDir),
    },
  ];
  const faces = [...(objectFace ? objectEntries : []), ...(tusFace ? tusEntries.filter((e) => TUS_VARIANTS.includes(e.variant)) : [])];

  const results = Object.fromEntries(faces.map((f) => [f.key, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const face of faces) {
      await settle();
      const m = await measure(face.pid, face.run);
      face.check();
      const r = {
        mbps: SIZE / m.seconds / 1e6,
        cpuPerGiB: (m.cpuSeconds * GiB) / SIZE,
        sysPerGiB: (m.sysSeconds * GiB) / SIZE,
        peakRssMiB: m.peakRssMiB,
        completeSeconds: m.result?.completeSeconds,
      };
      results[face.key].push(r);
      const complete = r.completeSeconds === undefined ? '' : ` (complete → COMPLETED ${fmt(r.completeSeconds, 2)} s)`;
      console.log(
        `round ${round} ${face.label}: ${fmt(r.mbps)} MB/s, ${fmt(r.cpuPerGiB, 2)} CPU-s/GiB (kernel ${fmt(r.sysPerGiB, 2)}), peak RSS ${fmt(r.peakRssMiB)} MiB${complete}`,
      );
    }
  }

  const med = (key, field) => median(results[key].map((r) => r[field]));
  const peak = (key) => Math.max(...results[key].map((r) => r.peakRssMiB));
  const heading = `${fmt(SIZE / MiB, 0)} MiB, medians of ${ROUNDS} round(s), alternating in one run (server CPU and peak RSS during the upload)`;
  if (objectFace) {
    console.log(`\nobject face: ${heading}:`);
    console.table(
      objectEntries.map((f) => ({
        upload: f.label,
        MBps: fmt(med(f.key, 'mbps')),
        vsTusOneRequest: fmt(med(f.key, 'mbps') / med('tus', 'mbps'), 2),
        cpuSPerGiB: fmt(med(f.key, 'cpuPerGiB'), 2),
        cpuVsTus: fmt(med(f.key, 'cpuPerGiB') / med('tus', 'cpuPerGiB'), 2),
        peakRssMiB: fmt(peak(f.key)),
        ...(f.key === 'multipart' ? { completeS: fmt(med(f.key, 'completeSeconds'), 2) } : {}),
      })),
    );
  }
  const variants = [
    ['one', 'one request', 'ferryTus1', 'peerTus1'],
    ['chunks', `${TUS_CHUNK / MiB} MiB chunks`, 'ferryTus8', 'peerTus8'],
    ['replicas', `${TUS_CHUNK / MiB} MiB chunks, 2 replicas`, 'ferryTusR', 'peerTusR'],
  ]
    .filter(([v]) => TUS_VARIANTS.includes(v))
    .map(([, ...rest]) => rest);
  if (tusFace) {
    console.log(`\ntus face (same raw node:http client, one connection): ${heading}:`);
    console.table(
      variants.map(([variant, ferry, peer]) => ({
        variant,
        ferryMBps: fmt(med(ferry, 'mbps')),
        peerMBps: fmt(med(peer, 'mbps')),
        ratio: fmt(med(ferry, 'mbps') / med(peer, 'mbps'), 2),
        ferryCpuSPerGiB: fmt(med(ferry, 'cpuPerGiB'), 2),
        peerCpuSPerGiB: fmt(med(peer, 'cpuPerGiB'), 2),
        ferryKernel: fmt(med(ferry, 'sysPerGiB'), 2),
        peerKernel: fmt(med(peer, 'sysPerGiB'), 2),
        ferryPeakRssMiB: fmt(peak(ferry)),
        peerPeakRssMiB: fmt(peak(peer)),
      })),
    );
  }
  const names = {
    object: 'object-api',
    multipart: 'multipart-api',
    worker: 'assembler-worker',
    grpc: 'ingest-grpc',
    tus: 'tus',
    multipart2: 'multipart-api #2',
    tus2: 'tus #2',
  };
  console.log(
    `lifetime peak RSS (VmHWM): ${Object.entries(procs)
      .map(([k, p]) => `${names[k]} ${fmt(hwmMiB(p.pid))} MiB`)
      .join(', ')}`,
  );
  if (objectFace) {
    console.log(
      `target: object PUT >= 0.90x tus (one request) with <= 1.5x its CPU-s/GiB: ${fmt(med('object', 'mbps') / med('tus', 'mbps'), 2)}x, ` +
        `${fmt(med('object', 'cpuPerGiB') / med('tus', 'cpuPerGiB'), 2)}x CPU`,
    );
  }
  if (tusFace) {
    console.log(
      `target: Ferry's tus >= 1.0x @tus/server: ${variants
        .map(([variant, ferry, peer]) => `${variant} ${fmt(med(ferry, 'mbps') / med(peer, 'mbps'), 2)}x`)
        .join(', ')}`,
    );
  }
}

runBenchmark(main, { paths: [dataDir, tusDir], work });
