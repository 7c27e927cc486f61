import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FerryConfig, loadConfig } from '@ferry/config';
import { REDIS, STORAGE } from '@ferry/core';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { Catalog, CatalogObject } from '@ferry/catalog';
import { AssemblyQueue, MultipartStore, requestDigest } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { TempDir, TestRedis, freePort, md5Hex, patternBytes, sha256Hex, startTestRedis, tempDir } from '@ferry/testing';
import { WorkerModule } from './worker.module';

describe('assembler-worker (real Redis, disk and HTTP)', () => {
  let redis: TestRedis;
  let data: TempDir;
  let config: FerryConfig;
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-worker');
    const port = await freePort();
    config = loadConfig({
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_WORKER_PORT: String(port),
      FERRY_EXPIRE_INTERVAL_MS: '200',
      FERRY_UPLOAD_IDLE_TTL_MS: '600',
      FERRY_BLOB_GRACE_MS: '0',
      FERRY_LOG_LEVEL: 'silent',
    });
    app = await NestFactory.create(WorkerModule.register(config), { logger: false });
    await app.listen(port, '127.0.0.1');
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await app.close();
    await redis.stop();
    data.remove();
  });

  it('serves liveness, readiness and Prometheus metrics', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok', redis: 'ok', storage: 'ok' });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('ferry_uploads_expired_total');
    expect(metrics).toMatch(/^ferry_queue_jobs\{queue="assembly",state="waiting"\} \d+$/m);
    expect(metrics).toMatch(/^ferry_queue_jobs\{queue="maintenance",state="(delayed|waiting|active|completed)"\} [1-9]\d*$/m); // the scheduled expiry job
    expect(metrics).toContain('ferry_process_cpu_seconds_total');
  });

  it('removes an idle upload and its staged bytes on schedule, but not an active one', async () => {
    const sessions = app.get(SessionStore);
    const storage = app.get<Storage>(STORAGE);
    for (const id of ['idle', 'busy']) {
      await sessions.getOrCreate({ id, name: id, protocol: 'test', owner: 'dev' });
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('partial'), 0);
      await f.close();
    }
    const lease = await sessions.acquireLease('busy');
    const renew = setInterval(() => void sessions.renewLease(lease), 300);
    const deadline = Date.now() + 10_000;
    // the job removes the session, then its staged bytes: wait for both
    while (((await sessions.exists('idle')) || (await storage.stagingSize('idle')) !== undefined) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    clearInterval(renew);
    expect(await sessions.exists('idle')).toBe(false);
    expect(await storage.stagingSize('idle')).toBeUndefined();
    expect(await sessions.exists('busy')).toBe(true);
    expect(await storage.stagingSize('busy')).toBe(7);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_uploads_expired_total [1-9]/);
    await sessions.releaseLease(lease);
  });

  const until = async (check: () => Promise<boolean>, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (!(await check()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  };

  it('assembles a completed multipart upload from the queue and publishes one file handle', async () => {
    const store = app.get(MultipartStore);
    const storage = app.get<Storage>(STORAGE);
    const content = patternBytes(3 * 1024 * 1024 + 5, 3);
    const request = { fileName: 'w.bin', contentType: 'text/plain', contentMD5Hex: md5Hex(content), fileSizeBytes: content.length, partSizeBytes: 5 * 1024 * 1024 };
    await store.create('mp_worker1', 'dev', requestDigest(request), request);
    const file = await storage.openStagingForParts('mp_worker1', content.length);
    await file.write(content, 0);
    await file.sync();
    await file.close();
    const lease = await store.beginPart('mp_worker1', 1);
    await store.endPart(lease, md5Hex(content));
    expect(await store.addPart('mp_worker1', 1, md5Hex(content))).toEqual({ ok: true });
    expect(await store.complete('mp_worker1')).toEqual({ state: 'ASSEMBLING' });
    const producer = createRedis(config.redis.url, 'producer');
    const queue = new AssemblyQueue(producer, app.get(RedisKeys).bullPrefix());
    try {
      await queue.ensure('mp_worker1');
      await queue.ensure('mp_worker1'); // idempotent
      await until(async () => (await store.get('mp_worker1'))?.state === 'COMPLETED');
    } finally {
      await queue.close();
      await producer.quit();
    }
    const done = await store.get('mp_worker1');
    expect(done).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.stringMatching(/^\d+$/) });
    expect(await storage.blobSize(sha256Hex(content))).toBe(content.length);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_assemblies_total\{outcome="COMPLETED"\} 1/);
  });

  it('expires idle multipart uploads with their staged parts and request entry, never one being written', async () => {
    const store = app.get(MultipartStore);
    const storage = app.get<Storage>(STORAGE);
    const request = { fileName: 'i.bin', contentType: 'x/y', contentMD5Hex: md5Hex('x'), fileSizeBytes: 10, partSizeBytes: 10 };
    for (const id of ['mp_idle', 'mp_busy']) {
      await store.create(id, 'dev', `${id}-request`, request);
      const f = await storage.openStagingForParts(id, 10);
      await f.close();
    }
    expect((await store.swapRequest('dev', 'mp_idle-request', '', 'mp_idle')).ok).toBe(true);
    const lease = await store.beginPart('mp_busy', 1);
    // the staging file of the busy upload looks old: the orphan sweep must still leave it alone
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(join(data.path, 'staging', 'mp_busy'), old, old);
    const renew = setInterval(() => void store.renewPart(lease), 200);
    try {
      await until(async () => !(await store.exists('mp_idle')));
      await new Promise((r) => setTimeout(r, 800));
    } finally {
      clearInterval(renew);
    }
    expect(await store.exists('mp_idle')).toBe(false);
    expect(await storage.stagingSize('mp_idle')).toBeUndefined();
    expect(await store.uploadForRequest('dev', 'mp_idle-request')).toBeUndefined();
    expect(await store.exists('mp_busy')).toBe(true);
    expect(await storage.stagingSize('mp_busy')).toBe(10);
    await store.abortPart(lease);
  });

  it('removes objects at their expires and collects their blob only when no live object references it', async () => {
    const catalog = app.get(Catalog);
    const storage = app.get<Storage>(STORAGE);
    const shared = Buffer.from('shared bytes');
    const alone = Buffer.from('bytes of one object');
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
    expect(await catalog.get('exp/alone')).toBeUndefined();
    expect(await catalog.get('exp/shared')).toBeUndefined();
    expect(await storage.blobSize(sha256Hex(alone))).toBeUndefined();
    // the blob a live object references stays, through several more runs
    await new Promise((r) => setTimeout(r, 800));
    expect(await catalog.get('live/shared')).toBeDefined();
    expect(await storage.blobSize(sha256Hex(shared))).toBe(shared.length);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_objects_expired_total [2-9]/);
    expect(metrics).toMatch(/ferry_blobs_collected_total [1-9]/);
  });

  it('sweeps orphaned object-upload staging but not that of an upload still alive', async () => {
    const storage = app.get<Storage>(STORAGE);
    const redis = app.get<Redis>(REDIS);
    for (const id of ['ob_live', 'ob_dead']) {
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('bytes'), 0);
      await f.close();
      const old = new Date(Date.now() - 3_600_000);
      utimesSync(join(data.path, 'staging', id), old, old);
    }
    await redis.set(app.get(RedisKeys).objectStaging('ob_live'), 'some/name', 'PX', 60_000);
    await until(async () => (await storage.stagingSize('ob_dead')) === undefined);
    expect(await storage.stagingSize('ob_dead')).toBeUndefined();
    expect(await storage.stagingSize('ob_live')).toBe(5);
  });
});
