#!/usr/bin/env node
// ByteStream and GCS v2 writes through ingest-grpc on S3 storage (on demand, not a test): two builds
// of ingest-grpc compared in one run (BENCH_A_DIST and BENCH_B_DIST: the `dist` directories of two
// checkouts, e.g. `git archive <commit> | tar -x -C /tmp/a` with node_modules linked and
// `nx run ingest-grpc:build` run there; both default to this checkout's `dist`), against one
// s3rver on loopback in a process of its own that counts the requests it serves, alternating A / B
// for every measurement:
//  - fast streams of BENCH_SIZE_MIB (512): GCS WriteObject (2 MiB messages with their crc32c,
//    finish_write on the last), BidiWriteObject (the same with flush + state_lookup every 16 MiB,
//    waiting for each answer, as the Go client does) and ByteStream Write (1 MiB messages): MB/s,
//    ingest-grpc CPU-seconds per GiB, and the S3 requests by kind per 8 MiB uploaded;
//  - slow streams: ByteStream Write paced at each of BENCH_SLOW_MBPS (1,10,40) MB/s for
//    BENCH_SLOW_MIB (24): the S3 requests per 8 MiB, and the bytes PUT to staging (parts and tail
//    pieces) per byte uploaded.
// Each upload's content differs (its first bytes), so every one really publishes; before each
// measurement the bucket is emptied and memory left to settle (BENCH_SETTLE_MS), as
// docs/benchmarking.md says. FERRY_S3_PART_SIZE is Ferry's default (8 MiB) unless BENCH_FERRY_ENV
// sets it.
//
// Usage: node tools/bench/s3-streams.mjs   (env: BENCH_A_DIST BENCH_B_DIST BENCH_SIZE_MIB=512 BENCH_ROUNDS=3
//        BENCH_SLOW_MBPS=1,10,40 BENCH_SLOW_MIB=24 BENCH_SETTLE_MS=10000 BENCH_FERRY_ENV={})
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import {
  GiB,
  MiB,
  bearer,
  freePort,
  grpc,
  listening,
  loadByteStream,
  measure,
  median,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
} from './lib.mjs';
import { crc32c, loadStorage } from '../lib/storage.mjs';

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 512) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 10000);
const SLOW_MBPS = (process.env.BENCH_SLOW_MBPS ?? '1,10,40').split(',').map(Number).filter(Boolean);
const SLOW_SIZE = Number(process.env.BENCH_SLOW_MIB ?? 24) * MiB;
const FERRY_ENV = JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}');
const DISTS = { A: process.env.BENCH_A_DIST ?? join(root, 'dist'), B: process.env.BENCH_B_DIST ?? join(root, 'dist') };
const GCS_CHUNK = 2 * MiB;
const BS_CHUNK = MiB;
const FLUSH_EVERY = 16 * MiB;
const BUCKET = 'bench';
const PER = 8 * MiB; // requests are reported per 8 MiB uploaded

const work = join(root, 'tmp', 'bench');
const s3Dir = join(work, 's3-streams-s3rver');
const dataDir = join(work, 's3-streams-data');
const fmt = (x, d = 1) => x.toFixed(d);
const md = bearer('dev-secret');
const block = randomBytes(16 * MiB);
const blockCrcs = Array.from({ length: block.length / GCS_CHUNK }, (_, i) => crc32c(block.subarray(i * GCS_CHUNK, (i + 1) * GCS_CHUNK)));

/** `len` bytes of the upload at `off`: the repeated block, its first 64 bytes unique to the upload. */
function content(unique, off, len) {
  const at = off % block.length;
  const bytes = block.subarray(at, at + len);
  return off === 0 ? Buffer.concat([unique, bytes.subarray(unique.length)]) : bytes;
}

const uniqueBytes = (label) => Buffer.from(`${label}-${process.hrtime.bigint()}`.padEnd(64, '.'));

function* gcsRequests(first, unique, { flush = false } = {}) {
  for (let off = 0; off < SIZE; off += GCS_CHUNK) {
    const len = Math.min(GCS_CHUNK, SIZE - off);
    const end = off + len;
    const data = content(unique, off, len);
    const crc = off > 0 && len === GCS_CHUNK ? blockCrcs[(off % block.length) / GCS_CHUNK] : crc32c(data);
    yield {
      ...(off === 0 ? first : {}),
      write_offset: off,
      checksummed_data: { content: data, crc32c: crc },
      ...(end === SIZE ? { finish_write: true } : flush && end % FLUSH_EVERY === 0 ? { flush: true, state_lookup: true } : {}),
    };
  }
}

const unary = (client, method, req) =>
  new Promise((resolve, reject) => client[method](req, md, (err, res) => (err ? reject(err) : resolve(res))));

function writeObject(client, uploadId, unique) {
  return new Promise((resolve, reject) => {
    const call = client.WriteObject(md, (err, res) => (err ? reject(err) : resolve(Number(res.resource?.size))));
    (async () => {
      for (const req of gcsRequests({ upload_id: uploadId }, unique)) if (!call.write(req)) await new Promise((r) => call.once('drain', r));
      call.end();
    })().catch(reject);
  });
}

async function bidiWriteObject(client, uploadId, unique) {
  const call = client.BidiWriteObject(md);
  let waiting;
  let last;
  const ended = new Promise((resolve, reject) => {
    call.on('data', (res) => {
      last = res;
      waiting?.();
    });
    call.on('error', reject);
    call.on('end', resolve);
  });
  for (const req of gcsRequests({ upload_id: uploadId }, unique, { flush: true })) {
    const answered = req.state_lookup ? new Promise((r) => (waiting = r)) : undefined;
    if (!call.write(req)) await new Promise((r) => call.once('drain', r));
    await answered;
  }
  call.end();
  await ended;
  return Number(last?.resource?.size);
}

/** A ByteStream Write of `size` bytes in 1 MiB messages, paced at `mbps` MB/s if given; resolves with committed_size. */
function byteStreamWrite(client, name, unique, size, mbps) {
  return new Promise((resolve, reject) => {
    const call = client.Write(md, (err, res) => (err ? reject(err) : resolve(Number(res.committed_size))));
    const chunk = mbps ? 256 * 1024 : BS_CHUNK;
    const t0 = performance.now();
    (async () => {
      for (let off = 0; off < size; off += chunk) {
        const len = Math.min(chunk, size - off);
        if (mbps) {
          const due = t0 + (off / (mbps * 1e6)) * 1000;
          if (due > performance.now()) await sleep(due - performance.now());
        }
        const ok = call.write({
          resource_name: off === 0 ? name : '',
          write_offset: off,
          finish_write: off + len === size,
          data: content(unique, off, len),
        });
        if (!ok) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    })().catch(reject);
  });
}

async function main(onCleanup) {
  console.log(
    `node ${process.version}, ${cpus().length} CPUs; A = ${DISTS.A}, B = ${DISTS.B}; s3rver on loopback; client data in memory; MB = 1e6 bytes`,
  );
  for (const dir of [s3Dir, dataDir]) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  const redis = await startRedis();
  onCleanup(() => redis.stop());
  const s3Port = await freePort();
  const statsPort = await freePort();
  const s3Proc = await startProcess(
    [join(root, 'tools', 'bench', 's3rver-server.mjs'), String(s3Port), s3Dir, BUCKET, String(statsPort)],
    {},
    () => listening(statsPort),
  );
  onCleanup(() => stopWithin(s3Proc));
  const endpoint = `http://127.0.0.1:${s3Port}`;
  const s3 = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  onCleanup(() => s3.destroy());
  const stats = async () => (await fetch(`http://127.0.0.1:${statsPort}/`)).json();

  const { Storage } = loadStorage();
  const { ByteStream } = loadByteStream();
  const options = { 'grpc.max_send_message_length': 16 * MiB, 'grpc.max_receive_message_length': 16 * MiB };
  const servers = {};
  for (const label of ['A', 'B']) {
    const port = await freePort();
    const gcs = new Storage(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
    const bs = new ByteStream(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
    const proc = await startProcess(
      [join(DISTS[label], 'apps', 'ingest-grpc', 'main.js')],
      {
        FERRY_GRPC_PORT: String(port),
        FERRY_GRPC_METRICS_PORT: '0',
        FERRY_CACHE_HTTP_PORT: '0',
        REDIS_URL: redis.url,
        FERRY_REDIS_PREFIX: `bench-${label}`,
        FERRY_DATA_DIR: join(dataDir, label),
        FERRY_LOG_LEVEL: 'warn',
        FERRY_STORAGE: 's3',
        FERRY_S3_ENDPOINT: endpoint,
        FERRY_S3_BUCKET: BUCKET,
        FERRY_S3_ACCESS_KEY_ID: 'S3RVER',
        FERRY_S3_SECRET_ACCESS_KEY: 'S3RVER',
        FERRY_S3_FORCE_PATH_STYLE: 'true',
        ...FERRY_ENV,
      },
      () =>
        unary(gcs, 'QueryWriteStatus', { upload_id: 'gcs_probe' }).then(
          () => true,
          (err) => err.code === grpc.status.NOT_FOUND,
        ),
    );
    onCleanup(() => stopWithin(proc));
    onCleanup(() => {
      gcs.close();
      bs.close();
    });
    servers[label] = { gcs, bs, proc };
  }

  async function emptyBucket() {
    for (;;) {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key }));
      if (keys.length === 0) return;
      await s3.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys, Quiet: true } }));
    }
  }

  /** Runs `fn` on server `label` and returns its figures and the S3 requests it caused (by kind). */
  async function run(label, size, fn) {
    await emptyBucket();
    await sleep(SETTLE_MS);
    const before = await stats();
    const m = await measure(servers[label].proc.pid, fn);
    if (m.result !== size) throw new Error(`${label}: finished with ${m.result} bytes, expected ${size}`);
    await sleep(500); // (deletions of superseded pieces run after the answer)
    const after = await stats();
    const requests = {};
    for (const [kind, c] of Object.entries(after)) {
      const d = { requests: c.requests - (before[kind]?.requests ?? 0), bytes: c.bytes - (before[kind]?.bytes ?? 0) };
      if (d.requests > 0) requests[kind] = d;
    }
    return { mbps: size / m.seconds / 1e6, cpuPerGiB: (m.cpuSeconds * GiB) / size, requests, size };
  }

  const ops = {
    'GCS WriteObject': async (label, i) => {
      const unique = uniqueBytes(`w${label}${i}`);
      const { upload_id } = await unary(servers[label].gcs, 'StartResumableWrite', {
        write_object_spec: { resource: { bucket: `projects/_/buckets/${BUCKET}`, name: `write-${label}-${i}` } },
      });
      return run(label, SIZE, () => writeObject(servers[label].gcs, upload_id, unique));
    },
    'GCS BidiWriteObject, flush every 16 MiB': async (label, i) => {
      const unique = uniqueBytes(`b${label}${i}`);
      const { upload_id } = await unary(servers[label].gcs, 'StartResumableWrite', {
        write_object_spec: { resource: { bucket: `projects/_/buckets/${BUCKET}`, name: `bidi-${label}-${i}` } },
      });
      return run(label, SIZE, () => bidiWriteObject(servers[label].gcs, upload_id, unique));
    },
    'ByteStream Write': (label, i) =>
      run(label, SIZE, () =>
        byteStreamWrite(servers[label].bs, `bench/bs-${label}-${i}-${Date.now()}`, uniqueBytes(`s${label}${i}`), SIZE),
      ),
  };

  /** Staging and blob requests per 8 MiB uploaded, and bytes PUT to the bucket per byte uploaded. */
  const costOf = (r) => {
    const per = r.size / PER;
    const count = (match) => Object.entries(r.requests).reduce((n, [k, c]) => n + (match(k) ? c.requests : 0), 0);
    const stagingBytes = Object.entries(r.requests).reduce(
      (n, [k, c]) => n + (k === 'PUT part' || k === 'PUT tail piece' ? c.bytes : 0),
      0,
    );
    return {
      partPuts: count((k) => k === 'PUT part') / per,
      tailPuts: count((k) => k === 'PUT tail piece') / per,
      deletes: count((k) => k.includes('(delete)')) / per,
      total: Object.values(r.requests).reduce((n, c) => n + c.requests, 0) / per,
      stagingBytesPerByte: stagingBytes / r.size,
    };
  };
  const costLine = (c) =>
    `per 8 MiB: ${fmt(c.partPuts, 2)} part PUTs, ${fmt(c.tailPuts, 2)} tail-piece PUTs, ${fmt(c.deletes, 2)} DeleteObjects, ${fmt(c.total, 2)} requests in all (publish included); bytes PUT to staging ${fmt(c.stagingBytesPerByte, 2)}x the upload`;

  const results = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [op, fn] of Object.entries(ops)) {
      for (const label of ['A', 'B']) {
        const r = await fn(label, round);
        ((results[op] ??= { A: [], B: [] })[label] ??= []).push(r);
        console.log(`${label} round ${round + 1} ${op}: ${fmt(r.mbps)} MB/s, ${fmt(r.cpuPerGiB, 2)} CPU-s/GiB; ${costLine(costOf(r))}`);
      }
    }
  }
  const slow = {};
  for (const mbps of SLOW_MBPS) {
    for (const label of ['A', 'B']) {
      const r = await run(label, SLOW_SIZE, () =>
        byteStreamWrite(
          servers[label].bs,
          `bench/slow-${label}-${mbps}-${Date.now()}`,
          uniqueBytes(`slow${label}${mbps}`),
          SLOW_SIZE,
          mbps,
        ),
      );
      (slow[mbps] ??= {})[label] = r;
      console.log(`${label} ByteStream paced at ${mbps} MB/s (${fmt(r.mbps)} reached): ${costLine(costOf(r))}`);
    }
  }

  console.log(`\n${fmt(SIZE / MiB, 0)} MiB per upload, medians of ${ROUNDS} rounds, A / B alternating; server CPU of ingest-grpc:`);
  console.table(
    Object.entries(results).map(([op, r]) => {
      const med = (label, key) => median(r[label].map((x) => x[key]));
      const cost = (label) => costOf(r[label][r[label].length - 1]);
      return {
        op,
        'A MB/s': fmt(med('A', 'mbps')),
        'B MB/s': fmt(med('B', 'mbps')),
        'B/A': fmt(med('B', 'mbps') / med('A', 'mbps'), 2),
        'A CPU-s/GiB': fmt(med('A', 'cpuPerGiB'), 2),
        'B CPU-s/GiB': fmt(med('B', 'cpuPerGiB'), 2),
        'A req/8MiB': fmt(cost('A').total, 2),
        'B req/8MiB': fmt(cost('B').total, 2),
        'A staging bytes': fmt(cost('A').stagingBytesPerByte, 2),
        'B staging bytes': fmt(cost('B').stagingBytesPerByte, 2),
      };
    }),
  );
  if (SLOW_MBPS.length > 0) {
    console.log(
      `ByteStream paced, ${fmt(SLOW_SIZE / MiB, 0)} MiB: S3 requests per 8 MiB (all kinds, publish included) and bytes PUT to staging per byte uploaded`,
    );
    console.table(
      Object.entries(slow).map(([mbps, r]) => ({
        'MB/s': mbps,
        'A req/8MiB': fmt(costOf(r.A).total, 2),
        'A tail PUTs/8MiB': fmt(costOf(r.A).tailPuts, 2),
        'B req/8MiB': fmt(costOf(r.B).total, 2),
        'B tail PUTs/8MiB': fmt(costOf(r.B).tailPuts, 2),
        'A staging bytes': fmt(costOf(r.A).stagingBytesPerByte, 2),
        'B staging bytes': fmt(costOf(r.B).stagingBytesPerByte, 2),
      })),
    );
  }
}

runBenchmark(main, { paths: [s3Dir, dataDir], work });
