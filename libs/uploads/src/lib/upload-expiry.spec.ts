import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { NotFoundError } from '@ferry/errors';
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

  it('lets no one re-create an upload while its expiry deletes the staged bytes, and lets them once it is done', async () => {
    let reached!: () => void;
    let release!: () => void;
    const atDelete = new Promise<void>((r) => (reached = r));
    const released = new Promise<void>((r) => (release = r));
    class PausingStorage extends FsStorage {
      override async deleteStaging(uploadId: string): Promise<void> {
        if (uploadId === 'racing') {
          reached();
          await released; // the expiry is between its steps: the session marked, the bytes still here
        }
        return super.deleteStaging(uploadId);
      }
    }
    await stage('racing');
    const expiry = new UploadExpiry(sessions, new PausingStorage(dir.path), lifetime);
    const running = expiry.run(Date.now() + lifetime + 1000);
    await atDelete;
    // a client (ByteStream names its upload, so it can re-create it) comes back now
    const reCreate = sessions.getOrCreate({ id: 'racing', name: 'racing', protocol: 'test', owner: 'dev' });
    await expect(reCreate).rejects.toBeInstanceOf(NotFoundError);
    await expect(sessions.acquireLease('racing')).rejects.toBeInstanceOf(NotFoundError);
    release();
    expect((await running).expiredSessions).toBeGreaterThanOrEqual(1);
    expect(await sessions.exists('racing')).toBe(false);
    // once the expiry is done, the upload starts afresh and what it writes stays
    await stage('racing');
    expect((await sessions.get('racing'))?.committed).toBe(0);
    expect(await storage.stagingSize('racing')).toBe(5);
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
