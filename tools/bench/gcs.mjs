#!/usr/bin/env node
// google.storage.v2 benchmark (on demand, not a test), in one run, alternating bare / Ferry:
//  - write BENCH_SIZE_MIB (1 GiB) through WriteObject (StartResumableWrite, then 2 MiB messages,
//    each with its crc32c, finish_write on the last) and through BidiWriteObject (flush +
//    state_lookup every 16 MiB, waiting for the persisted size as the Go client does), against
//    a bare grpc-js file sink (tools/bench/bare-gcs-sink.mjs: same proto and per-message crc32c
//    checks, one fsynced file per upload);
//  - read the object back through ReadObject (2 MiB chunks with crc32c) against the same sink
//    streaming its file, and against this process reading Ferry's blob file directly
//    (fs.createReadStream, 2 MiB reads), for context.
// Prints MB/s, server CPU-seconds per GiB, peak server RSS and the ratios of medians. Client data
// comes from memory (a 16 MiB random block, repeated; crc32c of each 2 MiB message computed once);
// before each write the previous output is deleted and memory left to settle (BENCH_SETTLE_MS),
// as docs/benchmarking.md explains. Every read is checked against the written sha256.
//
// Usage: npm run bench:gcs   (env: BENCH_SIZE_MIB=1024 BENCH_ROUNDS=3 BENCH_SETTLE_MS=15000 BENCH_FERRY_ENV={})
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  GiB,
  MiB,
  bearer,
  filesUnder,
  freePort,
  grpc,
  hwmMiB,
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

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const FERRY_ENV = JSON.parse(process.env.BENCH_FERRY_ENV ?? '{}');
const CHUNK = 2 * MiB;
const FLUSH_EVERY = 16 * MiB;
const BUCKET = 'bench';

const work = join(root, 'tmp', 'bench');
const dataDir = join(work, 'gcs');
const bareDir = join(work, 'gcs-bare');
const fmt = (x, d = 1) => x.toFixed(d);
const md = bearer('dev-secret');

const block = randomBytes(16 * MiB);
const blockCrcs = Array.from({ length: block.length / CHUNK }, (_, i) => crc32c(block.subarray(i * CHUNK, (i + 1) * CHUNK)));
const expectedSha = (() => {
  const h = createHash('sha256');
  for (let off = 0; off < SIZE; off += block.length) h.update(block.subarray(0, Math.min(block.length, SIZE - off)));
  return h.digest('hex');
})();

/** The write requests of one upload: 2 MiB messages with their crc32c; `flush` adds a flush + state_lookup every 16 MiB. */
function* requests(first, { flush = false } = {}) {
  for (let off = 0; off < SIZE; off += CHUNK) {
    const at = off % block.length;
    const len = Math.min(CHUNK, SIZE - off);
    const end = off + len;
    const content = block.subarray(at, at + len);
    const crc = len === CHUNK ? blockCrcs[at / CHUNK] : crc32c(content);
    const last = end === SIZE;
    yield {
      ...(off === 0 ? first : {}),
      write_offset: off,
      checksummed_data: { content, crc32c: crc },
      ...(last ? { finish_write: true } : flush && end % FLUSH_EVERY === 0 ? { flush: true, state_lookup: true } : {}),
    };
  }
}

const unary = (client, method, req) =>
  new Promise((resolve, reject) => client[method](req, md, (err, res) => (err ? reject(err) : resolve(res))));

async function writeObject(client, uploadId) {
  return new Promise((resolve, reject) => {
    const call = client.WriteObject(md, (err, res) => (err ? reject(err) : resolve(res)));
    (async () => {
      for (const req of requests({ upload_id: uploadId })) if (!call.write(req)) await new Promise((r) => call.once('drain', r));
      call.end();
    })().catch(reject);
  });
}

async function bidiWriteObject(client, uploadId) {
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
  for (const req of requests({ upload_id: uploadId }, { flush: true })) {
    const answered = req.state_lookup ? new Promise((r) => (waiting = r)) : undefined;
    if (!call.write(req)) await new Promise((r) => call.once('drain', r));
    await answered;
  }
  call.end();
  await ended;
  return last;
}

async function readObject(client, object) {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const res of client.ReadObject({ bucket: `projects/_/buckets/${BUCKET}`, object }, md)) {
    const content = res.checksummed_data?.content;
    if (content) {
      h.update(content);
      bytes += content.length;
    }
  }
  return { bytes, sha256: h.digest('hex') };
}

async function readFileDirectly(path) {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
    h.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: h.digest('hex') };
}

function checkRead(label, got) {
  if (got.bytes !== SIZE || got.sha256 !== expectedSha)
    throw new Error(`${label}: read ${got.bytes} bytes with sha256 ${got.sha256}, expected ${SIZE} with ${expectedSha}`);
}

async function main(onCleanup) {
  console.log('building ingest-grpc...');
  execFileSync(
    process.execPath,
    [join(root, 'node_modules', 'nx', 'dist', 'bin', 'nx.js'), 'run', 'ingest-grpc:build', '--output-style=static'],
    {
      cwd: root,
      stdio: 'ignore',
      env: { ...process.env, NX_DAEMON: 'false' },
    },
  );
  for (const dir of [dataDir, bareDir]) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  const redis = await startRedis();
  onCleanup(() => redis.stop());
  const { Storage } = loadStorage();
  const ferryPort = await freePort();
  const barePort = await freePort();
  // the same client settings for both servers; a large receive window so that reads are not paced by the client
  const options = {
    'grpc.max_send_message_length': 16 * MiB,
    'grpc.max_receive_message_length': 16 * MiB,
    'grpc-node.flow_control_window': 8 * MiB,
  };
  const ferry = new Storage(`127.0.0.1:${ferryPort}`, grpc.credentials.createInsecure(), options);
  const bare = new Storage(`127.0.0.1:${barePort}`, grpc.credentials.createInsecure(), options);
  onCleanup(() => {
    ferry.close();
    bare.close();
  });
  const answers = (client, id) =>
    unary(client, 'QueryWriteStatus', { upload_id: id }).then(
      () => true,
      (err) => err.code === grpc.status.NOT_FOUND,
    );
  const ferryProc = await startProcess(
    [join(root, 'dist', 'apps', 'ingest-grpc', 'main.js')],
    {
      ...FERRY_ENV,
      FERRY_GRPC_PORT: String(ferryPort),
      FERRY_GRPC_METRICS_PORT: '0',
      FERRY_CACHE_HTTP_PORT: '0',
      REDIS_URL: redis.url,
      FERRY_DATA_DIR: dataDir,
      FERRY_LOG_LEVEL: 'warn',
    },
    () => answers(ferry, 'gcs_probe'),
  );
  onCleanup(() => stopWithin(ferryProc));
  const bareProc = await startProcess([join(root, 'tools', 'bench', 'bare-gcs-sink.mjs'), String(barePort), bareDir], {}, () =>
    answers(bare, 'x'),
  );
  onCleanup(() => stopWithin(bareProc));

  async function settle() {
    rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
    rmSync(bareDir, { recursive: true, force: true });
    mkdirSync(bareDir, { recursive: true });
    await sleep(SETTLE_MS);
  }

  const figures = (m) => ({ mbps: SIZE / m.seconds / 1e6, cpuPerGiB: (m.cpuSeconds * GiB) / SIZE, peakRssMiB: m.peakRssMiB });
  const spec = (object) => ({ write_object_spec: { resource: { bucket: `projects/_/buckets/${BUCKET}`, name: object } } });
  const results = { ferry: [], bare: [] };
  const line = (f) => `${fmt(f.mbps)} MB/s, ${fmt(f.cpuPerGiB, 2)} CPU-s/GiB, peak RSS ${fmt(f.peakRssMiB)} MiB`;

  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, client, proc] of [
      ['bare', bare, bareProc],
      ['ferry', ferry, ferryProc],
    ]) {
      const r = {};
      for (const mode of ['write', 'bidi']) {
        await settle();
        const object = `${mode}-${round}-${Date.now()}`;
        const { upload_id: id } = await unary(client, 'StartResumableWrite', spec(object));
        const m = await measure(proc.pid, () => (mode === 'write' ? writeObject(client, id) : bidiWriteObject(client, id)));
        const size = Number(m.result.resource?.size);
        if (size !== SIZE)
          throw new Error(`${label} ${mode}: finished with ${JSON.stringify(m.result)}, expected an object of ${SIZE} bytes`);
        r[mode] = figures(m);
        if (mode === 'write') {
          // read back what was just written (Ferry: the object; bare: its file, named by upload id)
          const read = await measure(proc.pid, () => readObject(client, label === 'ferry' ? object : id));
          checkRead(`${label} ReadObject`, read.result);
          r.read = figures(read);
        }
      }
      if (label === 'ferry') {
        const blobs = filesUnder(join(dataDir, 'blobs'));
        if (blobs.length !== 1 || blobs[0] !== SIZE)
          throw new Error(`Ferry's blob tree holds ${JSON.stringify(blobs)}, expected one blob of ${SIZE} bytes`);
        const blobPath = execFileSync('find', [join(dataDir, 'blobs'), '-type', 'f'], { encoding: 'utf8' }).trim();
        const direct = await measure(process.pid, () => readFileDirectly(blobPath));
        checkRead('direct file read', direct.result);
        r.direct = figures(direct);
      }
      results[label].push(r);
      console.log(
        `${label.padEnd(5)} round ${round + 1}: WriteObject ${line(r.write)}; BidiWriteObject ${line(r.bidi)}; ReadObject ${line(r.read)}` +
          (r.direct ? `; direct file read ${fmt(r.direct.mbps)} MB/s` : ''),
      );
    }
  }

  const med = (who, op, key) => median(results[who].map((r) => r[op][key]));
  const peak = (who, op) => Math.max(...results[who].map((r) => r[op].peakRssMiB));
  const rows = [
    ['WriteObject', 'write'],
    ['BidiWriteObject (flush every 16 MiB)', 'bidi'],
    ['ReadObject', 'read'],
  ].map(([op, key]) => ({
    op,
    ferryMBps: fmt(med('ferry', key, 'mbps')),
    bareMBps: fmt(med('bare', key, 'mbps')),
    ratio: fmt(med('ferry', key, 'mbps') / med('bare', key, 'mbps'), 2),
    ferryCpuPerGiB: fmt(med('ferry', key, 'cpuPerGiB'), 2),
    bareCpuPerGiB: fmt(med('bare', key, 'cpuPerGiB'), 2),
    ferryPeakRssMiB: fmt(peak('ferry', key)),
    barePeakRssMiB: fmt(peak('bare', key)),
  }));
  const ratio = (key) => med('ferry', key, 'mbps') / med('bare', key, 'mbps');
  // crc32c runs on every byte (per message and for the whole object): how fast is the native one?
  const crcSeconds = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    for (let j = 0; j < 16; j++) crc32c(block); // 256 MiB
    crcSeconds.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  const direct = median(results.ferry.map((r) => r.direct.mbps));
  console.log(
    `\n${fmt(SIZE / MiB, 0)} MiB, 2 MiB messages with crc32c (medians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}, alternating bare / Ferry; server CPU and RSS):`,
  );
  console.table(rows);
  console.log(
    `ReadObject against reading Ferry's blob file directly in this process: ${fmt(med('ferry', 'read', 'mbps'))} vs ${fmt(direct)} MB/s (ratio ${fmt(med('ferry', 'read', 'mbps') / direct, 2)})`,
  );
  console.log(
    `crc32c (@node-rs/crc32, native): ${fmt((256 * MiB) / median(crcSeconds) / 1e9, 2)} GB/s on one core (median of 5 passes over 256 MiB)`,
  );
  console.log(`lifetime peak RSS (VmHWM): ingest-grpc ${fmt(hwmMiB(ferryProc.pid))} MiB, bare sink ${fmt(hwmMiB(bareProc.pid))} MiB`);
  console.log(
    `targets: writes >= 0.75 (WriteObject ${fmt(ratio('write'), 2)}, BidiWriteObject ${fmt(ratio('bidi'), 2)}); ReadObject >= 0.70 (${fmt(ratio('read'), 2)} of the bare sink, ${fmt(med('ferry', 'read', 'mbps') / direct, 2)} of a direct file read)`,
  );
}

runBenchmark(main, { paths: [dataDir, bareDir], work });
