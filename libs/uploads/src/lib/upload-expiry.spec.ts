import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import { FsStorage } from '@ferry/storage';
import { TempDir, TestRedis, startTestRedis, tempDir } from '@ferry/testing';
import { UploadExpiry } from './upload-expiry';

describe('UploadExpiry (real Redis and disk)', () => {
  let server: TestRedis;
  let redis: Redis;
  let dir: TempDir;
  let sessions: SessionStore;
  let storage: FsStorage;
  const lifetime = 60_000;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    dir = tempDir('ferry-expiry');
    // the lease of 'leased' must outlive every run of a test, however slow the machine
    sessions = new SessionStore(redis, new RedisKeys(server.prefix), { idleLifetimeMs: lifetime, leaseTtlMs: 60_000 });
    storage = new FsStorage(dir.path);
  });

  afterAll(async () => {
    await redis.quit();
    await server.stop();
    dir.remove();
  });

  async function stage(id: string): Promise<void> {
    await sessions.getOrCreate({ id, name: id, protocol: 'test', owner: 'dev' });
    const f = await storage.openStaging(id, 0);
    await f.write(Buffer.from('bytes'), 0);
    await f.close();
  }

  it('removes idle uploads with their bytes, keeps active and leased ones', async () => {
    await stage('idle1');
    await stage('idle2');
    await stage('leased');
    const lease = await sessions.acquireLease('leased');
    const expiry = new UploadExpiry(sessions, storage, lifetime);
    expect(await expiry.run(Date.now())).toEqual({ expiredSessions: 0, removedStaging: 0 });
    const report = await expiry.run(Date.now() + lifetime + 1000, 1);
    expect(report.expiredSessions).toBe(2);
    expect(await storage.stagingSize('idle1')).toBeUndefined();
    expect(await storage.stagingSize('idle2')).toBeUndefined();
    expect(await sessions.exists('idle1')).toBe(false);
    expect(await storage.stagingSize('leased')).toBe(5);
    expect(await sessions.exists('leased')).toBe(true);
    await sessions.releaseLease(lease);
  });

  it('sweeps old staging bytes whose session is gone, but not fresh ones', async () => {
    for (const id of ['orphan-old', 'orphan-new']) {
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('x'), 0);
      await f.close();
    }
    const old = (Date.now() - 2 * lifetime) / 1000;
    utimesSync(join(dir.path, 'staging', 'orphan-old'), old, old);
    const report = await new UploadExpiry(sessions, storage, lifetime).run(Date.now());
    expect(report.removedStaging).toBe(1);
    expect(await storage.stagingSize('orphan-old')).toBeUndefined();
    expect(await storage.stagingSize('orphan-new')).toBe(1);
  });
});
