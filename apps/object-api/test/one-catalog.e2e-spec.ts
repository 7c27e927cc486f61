/**
 * One catalog, end to end: the four built apps run as processes on one Redis and one data
 * directory; an object uploaded over ByteStream (gRPC), a file uploaded through the multipart API
 * (assembled by the worker) and an object uploaded through the object API are each downloaded by
 * the unmodified Taskcluster client from object-api, under their documented names.
 */
import { ChildProcess, execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  MultipartClient,
  acceptsConnections,
  TempDir,
  TestRedis,
  byteStreamClient,
  freePort,
  patternBytes,
  sha256Hex,
  startBuiltApp,
  startTestRedis,
  stopProcess,
  tempDir,
  uploadBytes,
  waitHttpReady,
  waitUntilReady,
} from '@ferry/testing';

const run = promisify(execFile);
const TC_CLIENT = join(__dirname, 'tc-client.mjs');

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
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_GRPC_PORT: String(ports.grpc),
      FERRY_MULTIPART_PORT: String(ports.multipart),
      FERRY_OBJECT_PORT: String(ports.object),
      FERRY_WORKER_PORT: String(ports.worker),
      FERRY_LOG_LEVEL: 'warn',
    };
    // one after the other: apps booting at once on a busy machine each take as long as all of them
    children.push(startBuiltApp('ingest-grpc', env, true));
    // (its first upload is its readiness probe: no gRPC call before its port accepts connections)
    await waitUntilReady(children[0], () => acceptsConnections(ports.grpc), 'ingest-grpc');
    for (const [app, port] of [
      ['multipart-api', ports.multipart],
      ['object-api', ports.object],
      ['assembler-worker', ports.worker],
    ] as const) {
      children.push(startBuiltApp(app, env, true));
      await waitHttpReady(children[children.length - 1], port);
    }
  });

  afterAll(async () => {
    await Promise.all(children.map((c) => stopProcess(c, 'SIGTERM')));
    await redis.stop();
    data.remove();
  });

  async function tcDownload(name: string): Promise<string> {
    const { stdout } = await run(process.execPath, [
      TC_CLIENT,
      `http://127.0.0.1:${ports.object}`,
      'dev',
      'dev-secret',
      'p',
      name,
      '0',
      'download-only',
    ]);
    return (JSON.parse(stdout) as { downloadedSha256: string }).downloadedSha256;
  }

  it('downloads a ByteStream object by its resource name', async () => {
    const content = patternBytes(3 * 1024 * 1024 + 1, 41);
    const client = byteStreamClient(`127.0.0.1:${ports.grpc}`);
    try {
      await waitUntilReady(
        children[0],
        async () => (await uploadBytes(client, 'builds/one-catalog.bin', content)) === content.length,
        'ingest-grpc',
      );
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
    const { stdout } = await run(process.execPath, [
      TC_CLIENT,
      `http://127.0.0.1:${ports.object}`,
      'dev',
      'dev-secret',
      'p',
      'tc/e2e.bin',
      String(100_000),
    ]);
    const out = JSON.parse(stdout) as { uploadedSha256: string; downloadedSha256: string };
    expect(out.downloadedSha256).toBe(out.uploadedSha256);
  });
});
