#!/usr/bin/env node
// What the `ferry` command costs over the bare protocol clients of the benchmarks (on demand, not a
// test): the same file uploaded to one Ferry stack by `ferry upload` (a process, as a user runs it:
// it reads the file, hashes it for the final sha256 check, shows no bar since its stderr is not a
// terminal) and by the benchmark's in-memory clients (ByteStream in 2 MiB Write messages; tus with
// tools/bench/tus-client.mjs in 8 MiB PATCHes), alternating A B in one run. Prints MB/s (wall time
// from the command's start to its exit, or the client's first byte to its answer), the medians and
// the ratio ferry / bare per protocol.
//
// Usage: npm run bench:cli   (env: BENCH_SIZE_MIB=512 BENCH_ROUNDS=3 BENCH_PROTOCOLS=bytestream,tus)
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MiB,
  bearer,
  dist,
  freePort,
  grpc,
  listening,
  loadByteStream,
  median,
  request,
  root,
  runBenchmark,
  sleep,
  startProcess,
  startRedis,
  stopWithin,
} from './lib.mjs';
import { tusAgent, tusUpload } from './tus-client.mjs';

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 512) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PROTOCOLS = (process.env.BENCH_PROTOCOLS ?? 'bytestream,tus').split(',');
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 3000);
const CHUNK = 2 * MiB;

const work = join(tmpdir(), `ferry-bench-cli-${process.pid}`);
const dataDir = join(work, 'data');
const file = join(work, 'upload.bin');

runBenchmark(
  async (onCleanup) => {
    const apps = ['ingest-grpc', 'multipart-api', 'object-api', 'cli'];
    if (apps.some((app) => !existsSync(dist(app)))) {
      console.log(`building ${apps.join(', ')}...`);
      execFileSync('npx', ['nx', 'run-many', '-t', 'build', '-p', ...apps, '--output-style=static'], { cwd: root, stdio: 'inherit' });
    }
    mkdirSync(dataDir, { recursive: true });
    const block = randomBytes(16 * MiB);
    const data = Buffer.allocUnsafe(SIZE);
    for (let off = 0; off < SIZE; off += block.length) block.copy(data, off, 0, Math.min(block.length, SIZE - off));
    writeFileSync(file, data);

    const redis = await startRedis();
    onCleanup(() => redis.stop());
    const ports = { grpc: await freePort(), multipart: await freePort(), object: await freePort() };
    const env = {
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: 'bench',
      FERRY_DATA_DIR: dataDir,
      FERRY_GRPC_PORT: String(ports.grpc),
      FERRY_MULTIPART_PORT: String(ports.multipart),
      FERRY_OBJECT_PORT: String(ports.object),
      FERRY_GRPC_METRICS_PORT: '0',
      FERRY_CACHE_HTTP_PORT: '0',
      FERRY_LOG_LEVEL: 'warn',
      FERRY_CLIENTS: '',
      FERRY_CLIENTS_FILE: '',
    };
    const readyz = (port) => () => request(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200);
    for (const [app, ready] of [
      ['ingest-grpc', () => listening(ports.grpc)],
      ['multipart-api', readyz(ports.multipart)],
      ['object-api', readyz(ports.object)],
    ]) {
      const child = await startProcess([dist(app)], env, ready);
      onCleanup(() => stopWithin(child));
    }

    const { ByteStream } = loadByteStream();
    const client = new ByteStream(`127.0.0.1:${ports.grpc}`, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 16 * MiB,
    });
    const bareByteStream = (name) =>
      new Promise((resolve, reject) => {
        const call = client.Write(bearer('dev-secret'), (err) => (err ? reject(err) : resolve()));
        (async () => {
          for (let off = 0; off < SIZE; off += CHUNK) {
            const len = Math.min(CHUNK, SIZE - off);
            const ok = call.write({
              resource_name: off === 0 ? name : '',
              write_offset: off,
              finish_write: off + len === SIZE,
              data: data.subarray(off, off + len),
            });
            if (!ok) await new Promise((r) => call.once('drain', r));
          }
          call.end();
        })().catch(reject);
      });
    const bareTus = () => {
      const agent = tusAgent();
      return tusUpload({
        endpoint: `http://127.0.0.1:${ports.multipart}/files`,
        data,
        chunkSize: 8 * MiB,
        headers: { authorization: 'Bearer dev-secret' },
        agent,
      }).finally(() => agent.destroy());
    };
    const ferry = (protocol, name) =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [join(root, 'tools', 'ferry.mjs'), 'upload', '-p', protocol, '-q', file, name], {
          env: {
            ...process.env,
            FERRY_GRPC_ADDRESS: `127.0.0.1:${ports.grpc}`,
            FERRY_MULTIPART_URL: `http://127.0.0.1:${ports.multipart}`,
            FERRY_OBJECT_URL: `http://127.0.0.1:${ports.object}`,
            FERRY_TOKEN: 'dev-secret',
            FERRY_STATE_DIR: join(work, 'state'),
          },
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ferry upload -p ${protocol} exited with ${code}`))));
      });

    const figures = {};
    let n = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      for (const protocol of PROTOCOLS) {
        for (const who of round % 2 ? ['bare', 'ferry'] : ['ferry', 'bare']) {
          rmSync(join(dataDir, 'blobs'), { recursive: true, force: true });
          await sleep(SETTLE_MS);
          const name = `bench/cli-${n++}.bin`;
          const started = process.hrtime.bigint();
          if (who === 'ferry') await ferry(protocol, name);
          else if (protocol === 'bytestream') await bareByteStream(name);
          else await bareTus();
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          const mbps = SIZE / 1e6 / seconds;
          (figures[protocol] ??= { bare: [], ferry: [] })[who].push(mbps);
          console.log(`round ${round} ${protocol} ${who === 'ferry' ? '`ferry upload`' : 'bare client'}: ${mbps.toFixed(1)} MB/s`);
        }
      }
    }
    console.log(`\n${SIZE / MiB} MiB, medians of ${ROUNDS} round(s), one run (ferry: the command's whole life, its file read and hashed):`);
    console.table(
      Object.entries(figures).map(([protocol, f]) => ({
        protocol,
        bareMBps: median(f.bare).toFixed(1),
        ferryMBps: median(f.ferry).toFixed(1),
        ratio: (median(f.ferry) / median(f.bare)).toFixed(2),
      })),
    );
  },
  { paths: [work] },
);
