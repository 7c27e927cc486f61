/**
 * One catalog, end to end: the four built apps run as processes on one Redis and one data
 * directory; an object uploaded over ByteStream (gRPC), a file uploaded through the multipart API
 * (assembled by the worker) and an object uploaded through the object API are each downloaded by
 * the unmodified Taskcluster client from object-api, under their documented names.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  MultipartClient,
  TempDir,
  TestRedis,
  byteStreamClient,
  freePort,
  patternBytes,
  sha256Hex,
  startTestRedis,
  tempDir,
  uploadBytes,
} from '@ferry/testing';

const run = promisify(execFile);
const DIST = join(__dirname, '..', '..', '..', 'dist', 'apps');
const TC_CLIENT = join(__dirname, 'tc-client.mjs');

async function waitFor(check: () => Promise<boolean>, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${what} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

describe('one catalog across ByteStream, multipart and the object API', () => {
  let redis: TestRedis;
  let data: TempDir;
  const children: ChildProcess[] = [];
  const ports = { grpc: 0, multipart: 0, object: 0, worker: 0 };

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-one-catalog');
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    const env = {
      ...process.env,
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_GRPC_PORT: String(ports.grpc),
      FERRY_MULTIPART_PORT: String(ports.multipart),
      FERRY_OBJECT_PORT: String(ports.object),
      FERRY_WORKER_PORT: String(ports.worker),
      FERRY_LOG_LEVEL: 'warn',
    };
    for (const app of ['ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker']) {
      children.push(spawn(process.execPath, [join(DIST, app, 'main.js')], { env, stdio: ['ignore', 'ignore', 'inherit'] }));
    }
    const ready = (port: number) => async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
    await waitFor(ready(ports.multipart), children[1], 'multipart-api');
    await waitFor(ready(ports.object), children[2], 'object-api');
    await waitFor(ready(ports.worker), children[3], 'assembler-worker');
  });

  afterAll(async () => {
    await Promise.all(children.map(stop));
    await redis.stop();
    data.remove();
  });

  async function tcDownload(name: string): Promise<string> {
    const { stdout } = await run(process.execPath, [TC_CLIENT, `http://127.0.0.1:${ports.object}`, 'dev', 'dev-secret', 'p', name, '0', 'download-only']);
    return (JSON.parse(stdout) as { downloadedSha256: string }).downloadedSha256;
  }

  it('downloads a ByteStream object by its resource name', async () => {
    const content = patternBytes(3 * 1024 * 1024 + 1, 41);
    const client = byteStreamClient(`127.0.0.1:${ports.grpc}`);
    try {
      await waitFor(async () => (await uploadBytes(client, 'builds/one-catalog.bin', content)) === content.length, children[0], 'ingest-grpc');
    } finally {
      client.close();
    }
    expect(await tcDownload('builds/one-catalog.bin')).toBe(sha256Hex(content));
  });

  it('downloads a multipart file as fileHandle/<id>', async () => {
    const content = patternBytes(6 * 1024 * 1024, 42);
    const mp = new MultipartClient({ base: `http://127.0.0.1:${ports.multipart}`, token: 'dev-secret' });
    const done = await mp.upload(content, { fileName: 'mp.bin', partSizeBytes: 5 * 1024 * 1024 });
    const handle = (done.body as { resultFileHandleId: string }).resultFileHandleId;
    expect(handle).toBeDefined();
    expect(await tcDownload(`fileHandle/${handle}`)).toBe(sha256Hex(content));
  });

  it('round-trips an object through the object API itself', async () => {
    const { stdout } = await run(process.execPath, [TC_CLIENT, `http://127.0.0.1:${ports.object}`, 'dev', 'dev-secret', 'p', 'tc/e2e.bin', String(100_000)]);
    const out = JSON.parse(stdout) as { uploadedSha256: string; downloadedSha256: string };
    expect(out.downloadedSha256).toBe(out.uploadedSha256);
  });
});
