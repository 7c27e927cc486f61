#!/usr/bin/env node
// The bounded REAPI cache (on demand, not a test), against ingest-grpc and the worker as built:
//  - FindMissingBlobs of 10,000 digests (half present) with the cache bounded (every present blob
//    is touched in the LRU): p50 / p99 latency;
//  - one eviction pass over BENCH_EVICT_BLOBS (100,000) small CAS blobs: the worker started with a
//    cap of half what is held evicts down to its low watermark (60% of the entries); entries per second;
//  - the cache-hit read path: a 256 MiB blob read over ByteStream (plain, and zstd-compressed on the
//    fly) against reading the same blob file with fs, in MB/s (medians of BENCH_ROUNDS).
//
// Usage: npm run bench:cache   (env: BENCH_EVICT_BLOBS=100000 BENCH_ROUNDS=3 BENCH_READ_MIB=256)
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import {
  MiB,
  bearer,
  freePort,
  grpc,
  inParallel,
  loadByteStream,
  median,
  percentile,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
  dist,
} from './lib.mjs';
import protoLoader from '@grpc/proto-loader';

const BLOBS = Number(process.env.BENCH_EVICT_BLOBS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const READ_SIZE = Number(process.env.BENCH_READ_MIB ?? 256) * MiB;
const work = join(tmpdir(), `ferry-bench-cache-${process.pid}`);
const sha = (b) => createHash('sha256').update(b).digest('hex');
const md = bearer('dev-secret');

function reapiCas(address) {
  const def = protoLoader.loadSync(join(root, 'proto/build/bazel/remote/execution/v2/remote_execution.proto'), {
    includeDirs: [join(root, 'proto'), join(root, 'node_modules/google-proto-files')],
    // (the generated types load the same files: proto/ and google-proto-files)
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def).build.bazel.remote.execution.v2;
  return new pkg.ContentAddressableStorage(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * MiB });
}

const unary = (client, method, req) =>
  new Promise((resolve, reject) => client[method](req, md, (err, res) => (err ? reject(err) : resolve(res))));

const grpcReady = (port) => () =>
  new Promise((resolve) => {
    const c = new (loadByteStream().ByteStream)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    c.waitForReady(Date.now() + 200, (err) => {
      c.close();
      resolve(!err);
    });
  });

runBenchmark(
  async (onCleanup) => {
    console.log(`command: BENCH_EVICT_BLOBS=${BLOBS} BENCH_ROUNDS=${ROUNDS} BENCH_READ_MIB=${READ_SIZE / MiB} node tools/bench/cache.mjs`);
    if (!existsSync(dist('ingest-grpc')) || !existsSync(dist('assembler-worker'))) {
      execFileSync('npx', ['nx', 'run-many', '-t', 'build', '-p', 'ingest-grpc', 'assembler-worker', '--output-style=static'], {
        cwd: root,
        stdio: 'inherit',
      });
    }
    mkdirSync(work, { recursive: true });
    const redis = await startRedis();
    onCleanup(() => redis.stop());
    const state = new Redis(redis.url);
    onCleanup(() => state.disconnect());
    const [grpcPort, workerPort] = [await freePort(), await freePort()];
    const env = {
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: 'bench',
      FERRY_DATA_DIR: work,
      FERRY_GRPC_PORT: String(grpcPort),
      FERRY_GRPC_METRICS_PORT: '0',
      FERRY_CACHE_HTTP_PORT: '0',
      FERRY_WORKER_PORT: String(workerPort),
      FERRY_LOG_LEVEL: 'warn',
      FERRY_CLIENTS: '',
      FERRY_CLIENTS_FILE: '',
      // ingest counts every blob (a cap it never reaches); the worker below evicts
      FERRY_CACHE_MAX_BYTES: String(1024 ** 4),
      FERRY_CACHE_MIN_AGE_MS: '0',
    };
    const ingest = await startProcess([dist('ingest-grpc')], env, grpcReady(grpcPort));
    onCleanup(() => stopWithin(ingest));
    const address = `127.0.0.1:${grpcPort}`;
    const cas = reapiCas(address);
    const { ByteStream } = loadByteStream();
    // (a client window as large as Bazel's netty grows to: grpc-js's default 64 KiB caps reads near 60 MB/s)
    const bs = new ByteStream(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * MiB,
      'grpc-node.flow_control_window': 8 * MiB,
    });

    // --- fill: BLOBS small blobs, 1000 per BatchUpdateBlobs ------------------------------------
    const digests = [];
    const t0 = Date.now();
    await inParallel(Math.ceil(BLOBS / 1000), 2, async (b) => {
      const requests = [];
      for (let i = b * 1000; i < Math.min(BLOBS, (b + 1) * 1000); i++) {
        const data = randomBytes(64);
        const digest = { hash: sha(data), size_bytes: data.length };
        digests.push(digest);
        requests.push({ digest, data });
      }
      const res = await unary(cas, 'BatchUpdateBlobs', { instance_name: '', requests });
      if (res.responses.some((r) => r.status.code !== 0)) throw new Error('a blob was refused');
    });
    const held = Number(await state.hget('bench:{cache}:totals', 'bytes'));
    console.log(`filled ${digests.length} blobs of 64 B in ${((Date.now() - t0) / 1000).toFixed(1)} s; the cache holds ${held} bytes`);

    // --- FindMissingBlobs of 10,000 digests, half present --------------------------------------
    const absent = Array.from({ length: 5000 }, () => ({ hash: sha(randomBytes(8)), size_bytes: 64 }));
    const query = [...digests.slice(0, 5000), ...absent];
    const latencies = [];
    for (let i = 0; i < 50; i++) {
      const t = process.hrtime.bigint();
      const res = await unary(cas, 'FindMissingBlobs', { instance_name: '', blob_digests: query });
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (res.missing_blob_digests.length !== 5000) throw new Error(`expected 5000 missing, got ${res.missing_blob_digests.length}`);
    }
    const fmb = { p50: median(latencies), p99: percentile(latencies, 99) };
    console.log(
      `FindMissingBlobs, 10,000 digests (5,000 present, touched): p50 ${fmb.p50.toFixed(1)} ms, p99 ${fmb.p99.toFixed(1)} ms (50 calls)`,
    );

    // --- one eviction pass: the worker with a cap of half what is held --------------------------
    const total = Number(await state.hget('bench:{cache}:totals', 'bytes'));
    const cap = Math.floor(total / 2);
    const low = Math.floor(cap * 0.8);
    const worker = await startProcess(
      [dist('assembler-worker')],
      { ...env, FERRY_CACHE_MAX_BYTES: String(cap), FERRY_EXPIRE_INTERVAL_MS: '1000' },
      () => fetch(`http://127.0.0.1:${workerPort}/readyz`).then((r) => r.ok),
    );
    let first;
    let last;
    for (;;) {
      const [bytes, evicted] = (await state.hmget('bench:{cache}:totals', 'bytes', 'evicted')).map(Number);
      if (evicted > 0 && first === undefined) first = Date.now();
      if (bytes <= low) {
        last = Date.now();
        break;
      }
      await sleep(20);
    }
    await stopWithin(worker); // (the read path below runs with nothing evicting)
    const evicted = Number(await state.hget('bench:{cache}:totals', 'evicted'));
    const seconds = (last - first) / 1000;
    console.log(
      `eviction pass over ${digests.length} blobs (cap ${cap} B, down to ${low} B): ${evicted} entries evicted ` +
        `(name and file each) in ${seconds.toFixed(1)} s = ${(evicted / seconds).toFixed(0)} entries/s`,
    );
    // --- the cache-hit read path ----------------------------------------------------------------
    const big = Buffer.concat(Array.from({ length: READ_SIZE / (16 * MiB) }, () => randomBytes(16 * MiB)));
    const bigSha = sha(big);
    await new Promise((resolve, reject) => {
      const call = bs.Write(md, (err) => (err ? reject(err) : resolve()));
      (async () => {
        for (let off = 0; off < big.length; off += 2 * MiB) {
          const data = big.subarray(off, off + 2 * MiB);
          if (
            !call.write({
              resource_name: off === 0 ? `uploads/r/blobs/${bigSha}/${big.length}` : '',
              write_offset: off,
              finish_write: off + data.length === big.length,
              data,
            })
          )
            await new Promise((r) => call.once('drain', r));
        }
        call.end();
      })().catch(reject);
    });
    const readOver = async (name) => {
      const t = process.hrtime.bigint();
      let bytes = 0;
      for await (const msg of bs.Read({ resource_name: name, read_offset: 0, read_limit: 0 }, md)) bytes += msg.data.length;
      return { mbps: big.length / 1e6 / (Number(process.hrtime.bigint() - t) / 1e9), bytes };
    };
    const readFile = async () => {
      const t = process.hrtime.bigint();
      for await (const chunk of createReadStream(join(work, 'blobs', 'sha256', bigSha.slice(0, 2), bigSha), { highWaterMark: 2 * MiB }))
        void chunk;
      return { mbps: big.length / 1e6 / (Number(process.hrtime.bigint() - t) / 1e9) };
    };
    const reads = { file: [], plain: [], zstd: [] };
    let zstdBytes = 0;
    for (let r = 0; r < ROUNDS; r++) {
      reads.file.push((await readFile()).mbps);
      reads.plain.push((await readOver(`blobs/${bigSha}/${big.length}`)).mbps);
      const z = await readOver(`compressed-blobs/zstd/${bigSha}/${big.length}`);
      reads.zstd.push(z.mbps);
      zstdBytes = z.bytes;
    }
    const rd = Object.fromEntries(Object.entries(reads).map(([k, v]) => [k, median(v)]));
    console.log(
      `read ${READ_SIZE / MiB} MiB (random bytes), medians of ${ROUNDS}: fs ${rd.file.toFixed(0)} MB/s, ByteStream ${rd.plain.toFixed(0)} MB/s ` +
        `(${(rd.plain / rd.file).toFixed(2)}x the file read), ByteStream zstd ${rd.zstd.toFixed(0)} MB/s of blob ` +
        `(${((zstdBytes / big.length) * 100).toFixed(1)}% of its size on the wire: incompressible)`,
    );

    bs.close();
    cas.close();
  },
  { paths: [work] },
);
