import { NestFactory } from '@nestjs/core';
import { Catalog, CatalogObject } from '@ferry/catalog';
import { REDIS, STORAGE } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { HttpAppHarness, md5Hex, sha256Hex, startHttpAppHarness } from '@ferry/testing';
import { WorkerModule } from '../app/worker.module';

export type WorkerHarness = HttpAppHarness;

/**
 * Boots the real worker on a free port with a private Redis and data directory, running expiry
 * every 200 ms (uploads idle after 600 ms, blobs collected without grace). `env` adds the rest
 * (the S3 settings, for one).
 */
export function startWorker(env: Record<string, string> = {}): Promise<WorkerHarness> {
  return startHttpAppHarness({
    portVariable: 'FERRY_WORKER_PORT',
    env: { FERRY_EXPIRE_INTERVAL_MS: '200', FERRY_UPLOAD_IDLE_TTL_MS: '600', FERRY_BLOB_GRACE_MS: '0', ...env },
    create: (config) => NestFactory.create(WorkerModule.register(config), { logger: false }),
  });
}

/** The worker of a suite, once its beforeAll has started it. */
export type WorkerContext = () => WorkerHarness;

export async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** Expiry of idle uploads, whatever the storage (run on local disk and on S3). */
export function itRemovesIdleUploads(ctx: WorkerContext): void {
    it('removes an idle upload and its staged bytes on schedule, but not an active one', async () => {
      const sessions = ctx().app.get(SessionStore);
      const storage = ctx().app.get<Storage>(STORAGE);
      for (const id of ['idle', 'busy']) {
        await sessions.getOrCreate({ id, name: id, protocol: 'test', owner: 'dev' });
        const f = await storage.openStaging(id, 0);
        await f.write(Buffer.from('partial'), 0);
        await f.sync(true);
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
      // counted when the job's run ends, a moment after the bytes are gone
      const expired = /ferry_uploads_expired_total [1-9]/;
      let metrics = '';
      await until(async () => expired.test((metrics = await (await fetch(`${ctx().base}/metrics`)).text())));
      expect(metrics).toMatch(expired);
      await sessions.releaseLease(lease);
    });
}

/** Expiry of objects and collection of their blobs, whatever the storage. */
export function itExpiresObjects(ctx: WorkerContext): void {
    it('removes objects at their expires and collects their blob only when no live object references it', async () => {
      const catalog = ctx().app.get(Catalog);
      const storage = ctx().app.get<Storage>(STORAGE);
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
      // a name left in the expiry index by an interrupted delete, now an object that never expires
      const redis = ctx().app.get<Redis>(REDIS);
      await redis.zadd(ctx().app.get(RedisKeys).objectsByExpiry(), Date.now() - 60_000, 'live/shared');
      await until(async () => (await storage.blobSize(sha256Hex(alone))) === undefined);
      expect(await catalog.get('exp/alone')).toBeUndefined();
      expect(await catalog.get('exp/shared')).toBeUndefined();
      expect(await storage.blobSize(sha256Hex(alone))).toBeUndefined();
      // the blob a live object references stays, through several more runs
      await new Promise((r) => setTimeout(r, 800));
      expect(await catalog.get('live/shared')).toBeDefined();
      expect(await redis.zscore(ctx().app.get(RedisKeys).objectsByExpiry(), 'live/shared')).toBeNull();
      expect(await storage.blobSize(sha256Hex(shared))).toBe(shared.length);
      const metrics = await (await fetch(`${ctx().base}/metrics`)).text();
      expect(metrics).toMatch(/ferry_objects_expired_total [2-9]/);
      expect(metrics).toMatch(/ferry_blobs_collected_total [1-9]/);
    });
}
