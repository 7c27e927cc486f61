import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Catalog, CatalogObject } from '@ferry/catalog';
import { loadConfig } from '@ferry/config';
import { STORAGE } from '@ferry/core';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { TestRedis, TestS3, freePort, md5Hex, sha256Hex, startTestRedis, startTestS3 } from '@ferry/testing';
import { WorkerModule } from './worker.module';

/** The worker's expiry and collection jobs with FERRY_STORAGE=s3: the same jobs, the bucket's objects. */
describe('assembler-worker on S3 storage (s3rver, real Redis and HTTP)', () => {
  let redis: TestRedis;
  let s3: TestS3;
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    s3 = await startTestS3('worker-bucket');
    const port = await freePort();
    const config = loadConfig({
      ...s3.env,
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_WORKER_PORT: String(port),
      FERRY_EXPIRE_INTERVAL_MS: '200',
      FERRY_UPLOAD_IDLE_TTL_MS: '600',
      FERRY_BLOB_GRACE_MS: '0',
      FERRY_LOG_LEVEL: 'silent',
    });
    app = await NestFactory.create(WorkerModule.register(config), { logger: false });
    await app.listen(port, '127.0.0.1');
    base = `http://127.0.0.1:${port}`;
  }, 30_000);

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
    await s3?.stop().catch(() => undefined);
  });

  async function until(condition: () => Promise<boolean>, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await condition()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  }

  it('removes an idle upload with its staged parts in the bucket, but not an active one', async () => {
    const sessions = app.get(SessionStore);
    const storage = app.get<Storage>(STORAGE);
    for (const id of ['idle', 'busy']) {
      await sessions.getOrCreate({ id, name: id, protocol: 'test', owner: 'dev' });
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('partial'), 0);
      await f.sync(true);
      await f.close();
    }
    const lease = await sessions.acquireLease('busy');
    const renew = setInterval(() => void sessions.renewLease(lease), 300);
    await until(async () => !(await sessions.exists('idle')) && (await storage.stagingSize('idle')) === undefined);
    clearInterval(renew);
    expect(await storage.stagingSize('idle')).toBeUndefined();
    expect(await storage.stagingSize('busy')).toBe(7);
  });

  it('removes objects at their expires and deletes their blob from the bucket when nothing references it', async () => {
    const catalog = app.get(Catalog);
    const storage = app.get<Storage>(STORAGE);
    const shared = Buffer.from('shared bytes on s3');
    const alone = Buffer.from('bytes of one object on s3');
    for (const b of [shared, alone]) await storage.putBlob(b, sha256Hex(b));
    const object = (name: string, data: Buffer, expires: string | null): CatalogObject => ({
      name, size: data.length, sha256: sha256Hex(data), md5: md5Hex(data), crc32c: '00000000', contentType: 'x/y', owner: 'dev',
      project: 'p', createdAt: new Date().toISOString(), expires, protocol: 'object', blob: sha256Hex(data),
    });
    const soon = new Date(Date.now() + 300).toISOString();
    await catalog.publish(object('exp/shared', shared, soon));
    await catalog.publish(object('live/shared', shared, null));
    await catalog.publish(object('exp/alone', alone, soon));
    await until(async () => (await storage.blobSize(sha256Hex(alone))) === undefined);
    expect(await storage.blobSize(sha256Hex(alone))).toBeUndefined();
    await new Promise((r) => setTimeout(r, 800));
    expect(await storage.blobSize(sha256Hex(shared))).toBe(shared.length);
  });

  it('reports itself not ready when the bucket cannot be reached', async () => {
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    await s3.stop();
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ code: 'UNAVAILABLE', message: 'redis: ok, storage: unavailable' });
  });
});
