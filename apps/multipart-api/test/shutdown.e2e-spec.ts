/**
 * Graceful shutdown of the built multipart-api: on SIGTERM it stops accepting connections, lets a
 * part PUT in flight finish and be acknowledged (durably: it can be added after a restart), closes
 * idle keep-alive connections and exits 0 promptly. A bad configuration exits 2 with a message naming the variable.
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import IORedis from 'ioredis';
import { RedisKeys } from '@ferry/redis';
import {
  MultipartClient,
  TempDir,
  TestRedis,
  exitOf,
  freePort,
  md5Hex,
  patternBytes,
  startBuiltApp,
  startTestRedis,
  stopProcess,
  tempDir,
  waitFor,
  waitHttpReady,
} from '@ferry/testing';

const MiB = 1024 * 1024;

/** True once nothing listens on `port` any more: a new connection is refused. */
function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('multipart-api shuts down gracefully', () => {
  let redis: TestRedis;
  let data: TempDir;

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-mp-shutdown');
  });

  afterAll(async () => {
    await redis.stop();
    data.remove();
  });

  it('finishes a part PUT in flight at SIGTERM, refuses new connections, and exits 0', async () => {
    const port = await freePort();
    const env = {
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_MULTIPART_PORT: String(port),
      FERRY_LOG_LEVEL: 'warn',
    };
    let api = startBuiltApp('multipart-api', env);
    const conn = new IORedis(redis.url);
    try {
      await waitHttpReady(api, port);
      const client = new MultipartClient({ base: `http://127.0.0.1:${port}`, token: 'dev-secret' });
      const content = patternBytes(8 * MiB, 3);
      const start = (
        await client.start({ fileName: 'x', contentMD5Hex: md5Hex(content), fileSizeBytes: content.length, partSizeBytes: content.length })
      ).body as { uploadId: string };
      const [u] = (await client.urls(start.uploadId, [1])).body.partPresignedUrls;

      // half the part, then SIGTERM, then the other half
      const req = httpRequest(u.uploadPresignedUrl, { method: 'PUT', headers: { 'content-length': String(content.length) } });
      const answered = new Promise<{ status: number; etag?: string }>((resolve, reject) => {
        req.on('response', (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, etag: res.headers.etag });
        });
        req.on('error', reject);
      });
      await new Promise<void>((resolve) => req.write(content.subarray(0, content.length / 2), () => resolve()));
      // in flight: the server is receiving the part (holds its lease)
      const lease = new RedisKeys(redis.prefix).uploadPartLease(start.uploadId, 1);
      await waitFor('multipart-api to take the lease of the part being PUT', async () => (await conn.exists(lease)) === 1);
      const exited = exitOf(api);
      api.kill('SIGTERM');
      await waitFor('multipart-api to stop accepting connections after SIGTERM', () => refusesConnections(port));
      req.end(content.subarray(content.length / 2));
      expect(await answered).toEqual({ status: 200, etag: `"${md5Hex(content)}"` });
      // and exits promptly: idle keep-alive connections (the client's earlier calls) are closed
      // (0.1-0.2 s beside four CPU hogs on two cores)
      const answeredAt = Date.now();
      expect(await exited).toBe(0);
      expect(Date.now() - answeredAt).toBeLessThan(2500);

      // the acknowledged part is durable: after a restart it can be added
      api = startBuiltApp('multipart-api', env);
      await waitHttpReady(api, port);
      expect((await client.add(start.uploadId, 1, md5Hex(content))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    } finally {
      conn.disconnect();
      await stopProcess(api);
    }
  });

  it('refuses to start without a signing key outside development mode, naming the variable', async () => {
    const api = startBuiltApp('multipart-api', {
      REDIS_URL: redis.url,
      FERRY_MULTIPART_PORT: String(await freePort()),
      FERRY_CLIENTS: JSON.stringify([{ clientId: 'a', accessToken: 'token-of-a', scopes: ['*'] }]),
      FERRY_SIGNING_KEY: '',
    });
    let stderr = '';
    api.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(await exitOf(api)).toBe(2);
    expect(stderr).toMatch(/FERRY_SIGNING_KEY: required/);
  });
});
