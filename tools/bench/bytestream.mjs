#!/usr/bin/env node
// ByteStream ingest benchmark (on demand, not a test):
//  - 256 MiB and 1 GiB streamed in 2 MiB Write messages through Ferry's ingest-grpc and through a
//    bare grpc-js sink that writes to a file (tools/bench/bare-sink.mjs), alternating A B A B in one
//    run; prints MB/s, server CPU-seconds per GiB, peak server RSS, and the ratio of medians;
//  - 1000 sequential 4 KiB CAS writes (REAPI upload names): median and p99 latency.
// Client data comes from memory (a 16 MiB random block, repeated). Before each large measurement
// the previous output is deleted and memory left to settle (BENCH_SETTLE_MS, default 15000), as
// docs/benchmarking.md explains.
//
// Usage: npm run bench   (env: BENCH_ROUNDS=3 BENCH_SIZES_MIB=256,1024 BENCH_SMALL=1000)
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  GiB,
  MiB,
  bearer,
  freePort,
  grpc,
  loadByteStream,
  measure,
  median,
  percentile,
  root,
  sleep,
  startProcess,
  startRedis,
  stopProcess,
} from './lib.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZES = (process.env.BENCH_SIZES_MIB ?? '256,1024').split(',').map((s) => Number(s) * MiB);
const SMALL = Number(process.env.BENCH_SMALL ?? 1000);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const CHUNK = Number(process.env.BENCH_CHUNK_KIB ?? 2048) * 1024;

const { ByteStream } = loadByteStream();
const md = bearer('dev-secret');

function client(port) {
  return new ByteStream(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 16 * MiB });
}

const block = randomBytes(16 * MiB);

/** Streams `size` bytes in 2 MiB messages; resolves with committed_size. */
function stream(c, name, size) {
  return new Promise((resolve, reject) => {
    const call = c.Write(md, (err, res) => (err ? reject(err) : resolve(Number(res.committed_size))));
    (async () => {
      for (let off = 0; off < size; off += CHUNK) {
        const len = Math.min(CHUNK, size - off);
        const at = off % block.length;
        const data = block.subarray(at, at + len);
        const ok = call.write({ resource_name: off === 0 ? name : '', write_offset: off, finish_write: off + len === size, data });
        if (!ok) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    })().catch(reject);
  });
}

function writeOnce(c, name, data) {
  return new Promise((resolve, reject) => {
    const call = c.Write(md, (err, res) => (err ? reject(err) : resolve(res)));
    call.write({ resource_name: name, write_offset: 0, finish_write: true, data });
    call.end();
  });
}

const fmt = (x, d = 1) => x.toFixed(d);

async function main() {
  if (!process.env.BENCH_NO_BUILD) console.log('building ingest-grpc...');
  if (!process.env.BENCH_NO_BUILD)
    execFileSync(
      process.execPath,
      [join(root, 'node_modules', 'nx', 'dist', 'bin', 'nx.js'), 'run', 'ingest-grpc:build', '--output-style=static'],
      {
        cwd: root,
        stdio: 'ignore',
        env: { ...process.env, NX_DAEMON: 'false' },
      },
    );
  const work = join(root, 'tmp', 'bench');
  rmSync(work, { recursive: true, force: true });
  const ferryDir = join(work, 'ferry');
  const sinkDir = join(work, 'sink');
  mkdirSync(ferryDir, { recursive: true });
  mkdirSync(sinkDir, { recursive: true });
  const redis = await startRedis();
  const ferryPort = await freePort();
  const sinkPort = await freePort();
  const ferryClient = client(ferryPort);
  const sinkClient = client(sinkPort);
  const pingFerry = () =>
    new Promise((r) => ferryClient.QueryWriteStatus({ resource_name: 'bench/probe' }, md, (err) => r(err?.code === grpc.status.NOT_FOUND)));
  const pingSink = () => new Promise((r) => sinkClient.QueryWriteStatus({ resource_name: 'x' }, md, (err) => r(!err)));
  const ferry = await startProcess(
    [join(root, 'dist', 'apps', 'ingest-grpc', 'main.js')],
    {
      ...JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}'),
      FERRY_GRPC_PORT: String(ferryPort),
      FERRY_GRPC_METRICS_PORT: '0',
      FERRY_CACHE_HTTP_PORT: '0',
      REDIS_URL: redis.url,
      FERRY_DATA_DIR: ferryDir,
      FERRY_LOG_LEVEL: 'warn',
    },
    pingFerry,
  );
  const sink = await startProcess([join(root, 'tools', 'bench', 'bare-sink.mjs'), String(sinkPort), sinkDir], {}, pingSink);
  const rows = [];
  try {
    for (const size of SIZES) {
      const results = { ferry: [], sink: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const [label, proc, c, dir] of [
          ['ferry', ferry, ferryClient, join(ferryDir, 'blobs')],
          ['sink', sink, sinkClient, sinkDir],
        ]) {
          rmSync(dir, { recursive: true, force: true });
          mkdirSync(dir, { recursive: true });
          await sleep(SETTLE_MS);
          const name = `bench/${label}-${size}-${round}-${Date.now()}`;
          const m = await measure(proc.pid, () => stream(c, name, size));
          if (m.result !== size) throw new Error(`${label}: committed ${m.result} of ${size}`);
          const r = {
            mbps: size / m.seconds / 1e6,
            cpuPerGiB: (m.cpuSeconds * GiB) / size,
            peakRssMiB: m.peakRssMiB,
            faultsMiBPerGiB: (m.minorFaults * 4096 * GiB) / size / MiB,
          };
          results[label].push(r);
          console.log(
            `${label.padEnd(5)} ${fmt(size / MiB, 0)} MiB round ${round + 1}: ${fmt(r.mbps)} MB/s, ${fmt(r.cpuPerGiB, 2)} CPU-s/GiB, peak RSS ${fmt(r.peakRssMiB)} MiB, fresh pages ${fmt(r.faultsMiBPerGiB, 0)} MiB/GiB`,
          );
        }
      }
      const f = median(results.ferry.map((r) => r.mbps));
      const s = median(results.sink.map((r) => r.mbps));
      rows.push({
        size: `${size / MiB} MiB`,
        ferryMBps: fmt(f),
        sinkMBps: fmt(s),
        ratio: fmt(f / s, 2),
        ferryCpuPerGiB: fmt(median(results.ferry.map((r) => r.cpuPerGiB)), 2),
        sinkCpuPerGiB: fmt(median(results.sink.map((r) => r.cpuPerGiB)), 2),
        ferryPeakRssMiB: fmt(Math.max(...results.ferry.map((r) => r.peakRssMiB))),
        sinkPeakRssMiB: fmt(Math.max(...results.sink.map((r) => r.peakRssMiB))),
      });
    }
    // Small CAS writes: each one a complete Write of one 4 KiB blob under a REAPI upload name.
    const latencies = [];
    const sinkLatencies = [];
    for (let i = 0; i < SMALL; i++) {
      const data = randomBytes(4096);
      const sha = createHash('sha256').update(data).digest('hex');
      let t = process.hrtime.bigint();
      await writeOnce(ferryClient, `uploads/${i}/blobs/${sha}/4096`, data);
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      t = process.hrtime.bigint();
      await writeOnce(sinkClient, `small-${i}`, data);
      sinkLatencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    console.log('\nLarge uploads (%d KiB messages, medians of %d rounds, alternating Ferry / bare sink):', CHUNK / 1024, ROUNDS);
    console.table(rows);
    console.log(
      `\n${SMALL} sequential 4 KiB CAS writes: Ferry p50 ${fmt(median(latencies), 2)} ms, p99 ${fmt(percentile(latencies, 99), 2)} ms; bare sink p50 ${fmt(median(sinkLatencies), 2)} ms, p99 ${fmt(percentile(sinkLatencies, 99), 2)} ms`,
    );
    const big = rows[rows.length - 1];
    console.log(
      `\ntargets: ratio >= 0.90 (${big.ratio}); Ferry peak RSS <= 150 MiB (${rows.map((r) => `${r.size}: ${r.ferryPeakRssMiB}`).join(', ')}); small p50 <= 3 ms (${fmt(median(latencies), 2)})`,
    );
  } finally {
    ferryClient.close();
    sinkClient.close();
    await stopProcess(ferry);
    await stopProcess(sink);
    redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
