#!/usr/bin/env node
// Multipart REST API on S3 storage (on demand, not a test): 1 GiB uploaded through Ferry's
// multipart-api with FERRY_STORAGE=s3 against an s3rver on loopback, beside the same bytes sent to
// the same s3rver as one bare PutObject (a presigned PUT), alternating bare / Ferry in one run.
//  - upload: Ferry hands out presigned part URLs of the bucket, the client PUTs the parts straight
//    to s3rver (4 in flight) and adds each one (Ferry HEADs the part and compares its ETag); the
//    bare baseline PUTs the whole object in one request;
//  - complete: complete→COMPLETED, in which the assembler-worker reads the parts back from the
//    bucket to hash them and joins them into the content-addressed blob (s3rver has no
//    UploadPartCopy, so the parts are streamed through the worker: on S3 or MinIO that step is a
//    server-side copy), beside one bare GET of the whole object.
// Prints MB/s, the CPU seconds per GiB of s3rver, multipart-api and the worker, peak RSS, ratios.
// Client data comes from memory (a 16 MiB random block, repeated); before each measurement the
// bucket is emptied and memory left to settle (BENCH_SETTLE_MS), as docs/benchmarking.md says.
//
// Usage: npm run bench:s3   (env: BENCH_SIZE_MIB=1024 BENCH_PART_MIB=16 BENCH_ROUNDS=3 BENCH_PARALLEL=4 BENCH_SETTLE_MS=15000)
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { Agent, get as httpGet } from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { TOKEN, multipartUpload } from './ferry-clients.mjs';
import {
  GiB,
  MiB,
  freePort,
  hwmMiB,
  listening,
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
} from './lib.mjs';

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * MiB;
const PART = Number(process.env.BENCH_PART_MIB ?? 16) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 4);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 15000);
const BUCKET = 'bench';

const work = join(root, 'tmp', 'bench');
const s3Dir = join(work, 's3rver');
const dist = (app) => join(root, 'dist', 'apps', app, 'main.js');
const fmt = (x, d = 1) => x.toFixed(d);
const md5Hex = (b) => createHash('md5').update(b).digest('hex');

/** Reads a whole response body, discarding it; resolves with its length. */
function drain(url, agent) {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent }, (res) => {
      let n = 0;
      res.on('data', (c) => (n += c.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function main(onCleanup) {
  const knobs = {
    BENCH_SIZE_MIB: SIZE / MiB,
    BENCH_PART_MIB: PART / MiB,
    BENCH_ROUNDS: ROUNDS,
    BENCH_PARALLEL: PARALLEL,
    BENCH_SETTLE_MS: SETTLE_MS,
  };
  console.log(
    `command: ${Object.entries(knobs)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')} node tools/bench/s3-multipart.mjs`,
  );
  console.log(
    `node ${process.version}, ${cpus().length} CPUs; client data in memory (16 MiB random block repeated); MB = 1e6 bytes; store: s3rver 3.7.1 on loopback`,
  );
  if (!existsSync(dist('multipart-api')) || !existsSync(dist('assembler-worker'))) {
    execFileSync('npx', ['nx', 'run-many', '-t', 'build', '-p', 'multipart-api', 'assembler-worker', '--output-style=static'], {
      cwd: root,
      stdio: 'inherit',
    });
  }
  rmSync(s3Dir, { recursive: true, force: true });
  mkdirSync(s3Dir, { recursive: true });

  const block = randomBytes(16 * MiB);
  const data = Buffer.allocUnsafe(SIZE);
  for (let off = 0; off < SIZE; off += block.length) block.copy(data, off, 0, Math.min(block.length, SIZE - off));
  const contentMD5Hex = md5Hex(data);
  const count = Math.ceil(SIZE / PART);
  const part = (n) => data.subarray((n - 1) * PART, Math.min(SIZE, n * PART));
  const partMd5s = Array.from({ length: count }, (_, i) => md5Hex(part(i + 1)));

  const s3Port = await freePort();
  const s3Proc = await startProcess([join(root, 'tools', 'bench', 's3rver-server.mjs'), String(s3Port), s3Dir, BUCKET], {}, () =>
    listening(s3Port),
  );
  onCleanup(() => stopWithin(s3Proc));
  const endpoint = `http://127.0.0.1:${s3Port}`;
  const s3 = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });

  const redis = await startRedis();
  onCleanup(() => redis.stop());
  const apiPort = await freePort();
  const workerPort = await freePort();
  const env = {
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: 'bench',
    FERRY_MULTIPART_PORT: String(apiPort),
    FERRY_WORKER_PORT: String(workerPort),
    FERRY_LOG_LEVEL: 'warn',
    FERRY_MULTIPART_COMPLETE_WAIT_MS: '600000',
    FERRY_CLIENTS: '',
    FERRY_CLIENTS_FILE: '',
    FERRY_STORAGE: 's3',
    FERRY_S3_ENDPOINT: endpoint,
    FERRY_S3_BUCKET: BUCKET,
    FERRY_S3_ACCESS_KEY_ID: 'S3RVER',
    FERRY_S3_SECRET_ACCESS_KEY: 'S3RVER',
    FERRY_S3_FORCE_PATH_STYLE: 'true',
  };
  const readyz = (port) => () => request(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200);
  const apiProc = await startProcess([dist('multipart-api')], env, readyz(apiPort));
  onCleanup(() => stopWithin(apiProc));
  const workerProc = await startProcess([dist('assembler-worker')], env, readyz(workerPort));
  onCleanup(() => stopWithin(workerProc));
  const base = `http://127.0.0.1:${apiPort}`;

  async function settle() {
    for (;;) {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
      const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key }));
      if (keys.length === 0) break;
      await s3.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys, Quiet: true } }));
    }
    await sleep(SETTLE_MS);
  }

  async function bareRound(round) {
    await settle();
    const agent = new Agent({ keepAlive: true });
    try {
      const key = `bare-${round}`;
      const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: BUCKET, Key: key, ContentLength: SIZE }), { expiresIn: 3600 });
      const up = await measure(s3Proc.pid, async () => {
        const res = await request(putUrl, { method: 'PUT', body: data, agent });
        if (res.status !== 200) throw new Error(`bare PUT: ${res.status} ${res.text}`);
      });
      const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: key }), { expiresIn: 3600 });
      const get = await measure(s3Proc.pid, () => drain(getUrl, agent));
      if (get.result !== SIZE) throw new Error(`bare GET: ${get.result} bytes`);
      return { mbps: SIZE / up.seconds / 1e6, s3CpuPerGiB: (up.cpuSeconds * GiB) / SIZE, getSeconds: get.seconds };
    } finally {
      agent.destroy();
    }
  }

  async function ferryRound(round) {
    await settle();
    const agent = new Agent({ keepAlive: true, maxSockets: PARALLEL });
    try {
      const upload = multipartUpload({
        base,
        agent,
        data,
        partSize: PART,
        parallel: PARALLEL,
        contentMD5Hex,
        partMd5s,
        fileName: `bench-${round}-${Date.now()}.bin`,
      });
      await upload.start();
      const apiCpu0 = procSample(apiProc.pid).cpuSeconds;
      const up = await measure(s3Proc.pid, () => upload.upload());
      const apiCpu = procSample(apiProc.pid).cpuSeconds - apiCpu0;
      const asm = await measure(workerProc.pid, () => upload.complete());
      const link = await request(`${base}/file/fileHandle/${asm.result.resultFileHandleId}/url?redirect=false`, {
        headers: { authorization: `Bearer ${TOKEN}` },
        agent,
      });
      const url = link.text.replace(/^"|"$/g, '');
      const got = await drain(url, agent);
      if (got !== SIZE) throw new Error(`download: ${got} bytes`);
      return {
        mbps: SIZE / up.seconds / 1e6,
        s3CpuPerGiB: (up.cpuSeconds * GiB) / SIZE,
        apiCpuPerGiB: (apiCpu * GiB) / SIZE,
        completeSeconds: asm.seconds,
        workerCpuPerGiB: (asm.cpuSeconds * GiB) / SIZE,
        workerPeakRssMiB: asm.peakRssMiB,
      };
    } finally {
      agent.destroy();
    }
  }

  const bare = [];
  const ferry = [];
  for (let round = 0; round < ROUNDS; round++) {
    const b = await bareRound(round);
    bare.push(b);
    console.log(
      `bare  round ${round + 1}: one PutObject ${fmt(b.mbps)} MB/s (s3rver ${fmt(b.s3CpuPerGiB, 2)} CPU-s/GiB); one GET of it ${fmt(b.getSeconds, 2)} s`,
    );
    const f = await ferryRound(round);
    ferry.push(f);
    console.log(
      `ferry round ${round + 1}: parts straight to the bucket ${fmt(f.mbps)} MB/s (s3rver ${fmt(f.s3CpuPerGiB, 2)}, multipart-api ${fmt(f.apiCpuPerGiB, 2)} CPU-s/GiB); ` +
        `complete→COMPLETED ${fmt(f.completeSeconds, 2)} s (worker ${fmt(f.workerCpuPerGiB, 2)} CPU-s/GiB, peak RSS ${fmt(f.workerPeakRssMiB)} MiB)`,
    );
  }
  const fm = median(ferry.map((r) => r.mbps));
  const bm = median(bare.map((r) => r.mbps));
  console.log(
    `\n${SIZE / MiB} MiB, ${PART / MiB} MiB parts, ${PARALLEL} in flight; medians of ${ROUNDS} rounds, alternating bare / Ferry:`,
  );
  console.table([
    {
      ferryUploadMBps: fmt(fm),
      barePutObjectMBps: fmt(bm),
      uploadRatio: fmt(fm / bm, 2),
      apiCpuPerGiB: fmt(median(ferry.map((r) => r.apiCpuPerGiB)), 2),
      completeS: fmt(median(ferry.map((r) => r.completeSeconds)), 2),
      bareGetS: fmt(median(bare.map((r) => r.getSeconds)), 2),
      workerCpuPerGiB: fmt(median(ferry.map((r) => r.workerCpuPerGiB)), 2),
      workerPeakRssMiB: fmt(Math.max(...ferry.map((r) => r.workerPeakRssMiB))),
    },
  ]);
  console.log(
    `lifetime peak RSS (VmHWM): multipart-api ${fmt(hwmMiB(apiProc.pid))} MiB, assembler-worker ${fmt(hwmMiB(workerProc.pid))} MiB, s3rver ${fmt(hwmMiB(s3Proc.pid))} MiB`,
  );
}

runBenchmark(main, { paths: [s3Dir], work });
