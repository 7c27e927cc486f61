import { NestFactory } from '@nestjs/core';
import { Catalog, CatalogObject } from '@ferry/catalog';
import { REDIS, STORAGE } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { HttpAppHarness, md5Hex, sha256Hex, sleep, startHttpAppHarness, waitFor } from '@ferry/testing';
import { WorkerModule } from '../app/worker.module';

export type WorkerHarness = HttpAppHarness;

/**
 * Boots the real worker on a free port with a private Redis and data directory, running expiry
 * every 200 ms (uploads idle after 600 ms, blobs collected without grace). `env` adds the rest
 * (the S3 settings, for one).
 *
 * An upload a test needs alive must be in its protected state (leased, renewing, completed...)
 * before it can look idle: take that state right after creating it, not after the rest of a setup
 * that a busy machine makes last longer than 600 ms.
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

/** Runs of the expiry job that have completed so far (the count of its duration histogram). */
export async function completedExpiryRuns(h: WorkerHarness): Promise<number> {
  const metrics = await (await fetch(`${h.base}/metrics`)).text();
  for (const line of metrics.split('\n')) {
    const m = /^ferry_job_duration_seconds_count\{([^}]*)\} (\d+)$/.exec(line);
    if (m && ['queue="maintenance"', 'job="expire-uploads"', 'outcome="completed"'].every((l) => m[1].split(',').includes(l)))
      return Number(m[2]);
  }
  return 0;
}

/**
 * Waits until `runs` runs of the expiry job that began after this call have completed, so that
 * what a test set up before it has been examined that many times, however slow the machine. (A run
 * under way at the call is not one of them: the job runs one run at a time, so the first that
 * counts is the one completing after it.)
 */
export async function afterExpiryRuns(h: WorkerHarness, runs = 1): Promise<void> {
  const before = await completedExpiryRuns(h);
  await waitFor(`${runs} more complete run(s) of the expiry job`, async () => (await completedExpiryRuns(h)) >= before + 1 + runs);
}

/** Expiry of idle uploads, whatever the storage (run on local disk and on S3). */
export function itRemovesIdleUploads(ctx: WorkerContext): void {
  it('removes an idle upload and its staged bytes on schedule, but not an active one', async () => {
    const sessions = ctx().app.get(SessionStore);
    const storage = ctx().app.get<Storage>(STORAGE);
    const stage = async (id: string) => {
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('partial'), 0);
      await f.sync(true);
      await f.close();
    };
    // the active upload is leased as soon as it exists, before the job could find it idle
    await sessions.getOrCreate({ id: 'busy', name: 'busy', protocol: 'test', owner: 'dev' });
    const lease = await sessions.acquireLease('busy');
    const leasedAt = Date.now();
    // the session key's own lifetime in Redis (a safety net of twice the idle lifetime, 1.2 s here,
    // which renewing the lease does not extend) is not under test: only the job must leave it alone
    await ctx().app.get<Redis>(REDIS).pexpire(ctx().app.get(RedisKeys).upload('busy'), 120_000);
    const renew = setInterval(() => void sessions.renewLease(lease), 300);
    try {
      await stage('busy');
      await sessions.getOrCreate({ id: 'idle', name: 'idle', protocol: 'test', owner: 'dev' });
      await stage('idle');
      // the job removes the session, then its staged bytes: wait for both
      await waitFor(
        'the idle upload and its staged bytes to be removed',
        async () => !(await sessions.exists('idle')) && (await storage.stagingSize('idle')) === undefined,
      );
      // the busy upload is as idle by its activity once the idle lifetime has passed since its
      // lease was taken: a whole run begun after that has examined it, and only its lease kept it
      await sleep(Math.max(0, leasedAt + ctx().config.uploads.idleLifetimeMs - Date.now()));
      await afterExpiryRuns(ctx());
    } finally {
      clearInterval(renew);
    }
    expect(await sessions.exists('idle')).toBe(false);
    expect(await storage.stagingSize('idle')).toBeUndefined();
    expect(await sessions.exists('busy')).toBe(true);
    expect(await storage.stagingSize('busy')).toBe(7);
    // counted when the job's run ends, a moment after the bytes are gone (that run has ended now)
    const metrics = await (await fetch(`${ctx().base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_uploads_expired_total [1-9]/);
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
      name,
      size: data.length,
      sha256: sha256Hex(data),
      md5: md5Hex(data),
      crc32c: '00000000',
      contentType: 'x/y',
      owner: 'dev',
      project: 'p',
      createdAt: new Date().toISOString(),
      expires,
      protocol: 'object',
      blob: sha256Hex(data),
    });
    // the live object first: the shared blob has its reference before any object using it can expire
    await catalog.publish(object('live/shared', shared, null));
    // a name left in the expiry index by an interrupted delete, now an object that never expires
    const redis = ctx().app.get<Redis>(REDIS);
    await redis.zadd(ctx().app.get(RedisKeys).objectsByExpiry(), Date.now() - 60_000, 'live/shared');
    const soon = new Date(Date.now() + 300).toISOString();
    await catalog.publish(object('exp/shared', shared, soon));
    await catalog.publish(object('exp/alone', alone, soon));
    await waitFor(
      'the blob of the expired "exp/alone" to be collected',
      async () => (await storage.blobSize(sha256Hex(alone))) === undefined,
    );
    expect(await catalog.get('exp/alone')).toBeUndefined();
    expect(await catalog.get('exp/shared')).toBeUndefined();
    expect(await storage.blobSize(sha256Hex(alone))).toBeUndefined();
    // the blob a live object references stays, through several more runs
    await afterExpiryRuns(ctx(), 3);
    expect(await catalog.get('live/shared')).toBeDefined();
    expect(await redis.zscore(ctx().app.get(RedisKeys).objectsByExpiry(), 'live/shared')).toBeNull();
    expect(await storage.blobSize(sha256Hex(shared))).toBe(shared.length);
    const metrics = await (await fetch(`${ctx().base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_objects_expired_total [2-9]/);
    expect(metrics).toMatch(/ferry_blobs_collected_total [1-9]/);
  });
}
