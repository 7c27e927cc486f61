import { createHash, randomBytes } from 'node:crypto';
import { Catalog, CatalogObject, casObjectName } from '@ferry/catalog';
import { ResourceExhaustedError } from '@ferry/errors';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { FsStorage, S3Storage, Storage, createS3Client } from '@ferry/storage';
import { TempDir, TestRedis, TestS3, startTestRedis, startTestS3, tempDir } from '@ferry/testing';
import { BoundedCache, CacheLimits } from './bounded-cache';
import { CacheIndex } from './cache-index';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.each(['disk', 'S3'])('BoundedCache (real Redis, %s storage)', (backend) => {
  let server: TestRedis;
  let redis: Redis;
  let keys: RedisKeys;
  let catalog: Catalog;
  let storage: Storage;
  let dir: TempDir;
  let s3: TestS3 | undefined;
  let n = 0;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    dir = tempDir();
    if (backend === 'S3') {
      s3 = await startTestS3();
      const client = createS3Client({
        endpoint: s3.endpoint,
        region: 'us-east-1',
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        forcePathStyle: true,
      });
      storage = new S3Storage(client, { bucket: s3.bucket, partBytes: 64 * 1024, createBucket: true });
    } else {
      storage = new FsStorage(dir.path);
    }
  });

  beforeEach(async () => {
    // a cache of its own per test (its keys under their own prefix)
    keys = new RedisKeys(`${server.prefix}${n++}`);
    catalog = new Catalog(redis, keys);
  });

  afterAll(async () => {
    await redis.quit();
    await server.stop();
    await s3?.stop();
    dir.remove();
  });

  const cacheOf = (limits: Partial<CacheLimits> = {}) =>
    new BoundedCache(new CacheIndex(redis, keys), redis, catalog, storage, {
      maxBytes: 1000,
      highBytes: 900,
      lowBytes: 800,
      minAgeMs: 60_000,
      claimGraceMs: 60_000,
      ...limits,
    });

  /** Stores a blob and publishes it as a CAS object (as the REAPI faces do), recorded by the cache. */
  async function casBlob(
    cache: BoundedCache,
    size: number,
    usedAt: number,
    protocol = 'reapi-cas',
  ): Promise<{ data: Buffer; sha256: string }> {
    const data = randomBytes(size);
    const sha256 = sha(data);
    const object: CatalogObject = {
      name: casObjectName(sha256, size),
      size,
      sha256,
      contentType: 'application/octet-stream',
      owner: 'dev',
      project: 'ci',
      createdAt: new Date().toISOString(),
      expires: null,
      protocol,
      blob: sha256,
    };
    await catalog.claimBlob(sha256, object.name);
    await storage.putBlob(data, sha256);
    await catalog.publish(object);
    await cache.published(object);
    await cache.index.touchBlobs([{ sha256, size }], usedAt);
    return { data, sha256 };
  }

  it('counts each entry once at its latest size, and forgets it', async () => {
    const index = new CacheIndex(redis, keys);
    const a = { sha256: 'a'.repeat(64), size: 100 };
    expect(await index.touchBlobs([a, { sha256: 'b'.repeat(64), size: 50 }], 1)).toBe(150);
    expect(await index.touchBlobs([a], 2)).toBe(150); // used again: counted once
    expect(await index.touchBlobs([{ sha256: 'e'.repeat(64), size: 0 }], 3)).toBe(150); // the empty blob costs nothing
    expect(await index.touchAction('ac-key', 30, 3)).toBe(180);
    expect(await index.touchAction('ac-key', 10, 4)).toBe(160); // a result written again, smaller
    expect((await index.oldest(10)).map((e) => [e.entry, e.usedAt])).toEqual([
      [{ kind: 'blob', sha256: 'b'.repeat(64), size: 50 }, 1],
      [{ kind: 'blob', sha256: 'a'.repeat(64), size: 100 }, 2],
      [{ kind: 'action', key: 'ac-key', size: 10 }, 4],
    ]);
    expect(await index.forget(CacheIndex.blobMember(a.sha256, a.size), true)).toBe(100);
    expect(await index.forget(CacheIndex.blobMember(a.sha256, a.size), true)).toBeUndefined();
    expect(await index.totals()).toEqual({ bytes: 60, evictedBytes: 100, evicted: 1 });
  });

  it('evicts the least recently used above the high watermark, down to the low one: names and bytes', async () => {
    const cache = cacheOf({ minAgeMs: 0 });
    const now = Date.now();
    const blobs = [];
    for (let i = 0; i < 10; i++) blobs.push(await casBlob(cache, 100, now - 10_000 + i * 1000));
    // used again: the oldest is now the most recently used
    await cache.index.touchBlobs([{ sha256: blobs[0].sha256, size: 100 }], now);
    expect(await cache.index.bytes()).toBe(1000);
    const report = await cache.run(now);
    expect(report).toMatchObject({ evictedEntries: 2, evictedBytes: 200, bytes: 800 });
    // blobs 1 and 2 were the least recently used: gone from the catalog and from storage
    for (const i of [1, 2]) {
      expect(await catalog.get(casObjectName(blobs[i].sha256, 100))).toBeUndefined();
      expect(await storage.blobSize(blobs[i].sha256)).toBeUndefined();
    }
    for (const i of [0, 3, 9]) expect(await storage.blobSize(blobs[i].sha256)).toBe(100);
    // below the high watermark: nothing to do
    expect(await cache.run(now)).toMatchObject({ evictedEntries: 0, bytes: 800 });
    expect(await cache.index.totals()).toMatchObject({ evictedBytes: 200, evicted: 2 });
  });

  it('never evicts what was used recently, a blob another object shares, or one an upload is publishing', async () => {
    const cache = cacheOf({ minAgeMs: 5_000, highBytes: 800, lowBytes: 500 });
    const now = Date.now();
    const shared = await casBlob(cache, 300, now - 60_000);
    // an object API upload of the same content: the blob is pinned by it
    await catalog.claimBlob(shared.sha256, 'builds/app.tar');
    const cas = await catalog.get(casObjectName(shared.sha256, 300));
    if (!cas) throw new Error('the CAS object is missing');
    await catalog.publish({ ...cas, name: 'builds/app.tar', protocol: 'object' });
    const claimed = await casBlob(cache, 300, now - 50_000);
    await catalog.claimBlob(claimed.sha256, 'uploads/in-flight'); // a publisher between claim and publish
    const recent = await casBlob(cache, 300, now - 1_000);
    const report = await cache.run(now);
    expect(report).toMatchObject({ evictedEntries: 0, pinnedBytes: 600, bytes: 900 });
    for (const b of [shared, claimed, recent]) expect(await storage.blobSize(b.sha256)).toBe(300);
    // full of what it may not evict: a new write is refused, and says why
    await expect(cache.admit(200, now)).rejects.toBeInstanceOf(ResourceExhaustedError);
    await expect(cache.admit(200, now)).rejects.toThrow(/full \(900 of 1000 bytes\) of entries that cannot be evicted/);
    await expect(cache.admit(5000, now)).rejects.toThrow(/does not fit in the cache/);
    expect(await cache.admit(100, now)).toBeUndefined(); // what fits is admitted
    // once the recent one ages, it makes room
    expect(await cache.admit(200, now + 10_000)).toBeUndefined();
    expect(await storage.blobSize(recent.sha256)).toBeUndefined();
  });

  it('evicts action results with the blobs, and forgets entries whose objects went elsewhere', async () => {
    const cache = cacheOf({ minAgeMs: 0, maxBytes: 500, highBytes: 450, lowBytes: 100 });
    const now = Date.now();
    const key = keys.actionResult('ci', 'f'.repeat(64));
    await redis.set(key, Buffer.alloc(200));
    await cache.index.touchAction(key, 200, now - 5000);
    const blob = await casBlob(cache, 200, now - 4000);
    // a blob the index knows whose CAS name is gone (deleted elsewhere): forgotten, not counted as evicted
    await cache.index.touchBlobs([{ sha256: 'd'.repeat(64), size: 100 }], now - 6000);
    expect(await cache.index.bytes()).toBe(500);
    expect(await cache.run(now)).toMatchObject({ evictedEntries: 2, evictedBytes: 400, bytes: 0 });
    expect(await redis.exists(key)).toBe(0);
    expect(await storage.blobSize(blob.sha256)).toBeUndefined();
  });
});
