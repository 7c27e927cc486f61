import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Catalog } from '@ferry/catalog';
import { ConcurrentWriterError, InvalidArgumentError } from '@ferry/errors';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import { FsStorage, StagingFile } from '@ferry/storage';
import { TempDir, TestRedis, patternBytes, startTestRedis, tempDir } from '@ferry/testing';
import { HashPool, HasherOptions, StreamHasher } from './hashing';
import { UploadEngine } from './upload-engine';

const KiB = 1024;

/** Local disk whose fsync takes 150 ms (so that writes land while a commit waits on it). */
class SlowSyncStorage extends FsStorage {
  override async openStaging(uploadId: string, size: number): Promise<StagingFile> {
    const file = await super.openStaging(uploadId, size);
    return Object.assign(Object.create(file) as StagingFile, {
      sync: async (final?: boolean) => {
        await sleep(150);
        return file.sync(final);
      },
    });
  }
}

/** A hashing thread that takes each chunk 300 ms late. */
class SlowHashPool extends HashPool {
  override hasher(options?: HasherOptions): StreamHasher {
    const inner = super.hasher(options);
    return {
      update: async (chunk: Buffer) => {
        await sleep(300);
        return inner.update(chunk);
      },
      digest: () => inner.digest(),
      dispose: () => inner.dispose(),
    };
  }
}

describe('UploadWriter (real Redis and disk)', () => {
  let server: TestRedis;
  let redis: Redis;
  let keys: RedisKeys;
  let dir: TempDir;
  let sessions: SessionStore;
  let storage: FsStorage;
  let catalog: Catalog;
  let pool: HashPool;
  let engine: UploadEngine;
  let n = 0;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    keys = new RedisKeys(server.prefix);
    dir = tempDir('ferry-writer');
    sessions = new SessionStore(redis, keys, { idleLifetimeMs: 60_000, leaseTtlMs: 1000 });
    storage = new FsStorage(dir.path);
    catalog = new Catalog(redis, keys);
    pool = new HashPool(1, 256 * KiB);
    // tiny batches and intervals so timer commits and explicit flushes interleave
    engine = new UploadEngine(sessions, storage, catalog, pool, { fsyncBytes: 64 * KiB, fsyncIntervalMs: 1, maxInFlightBytes: 128 * KiB });
  });

  afterAll(async () => {
    await pool.close();
    await redis.quit();
    await server.stop();
    dir.remove();
  });

  async function newUpload(): Promise<string> {
    const id = `w${n++}`;
    await engine.getOrCreateSession({ id, name: `obj-${id}`, protocol: 'test', owner: 'dev' });
    return id;
  }

  const describeObject = (id: string) => (size: number, d: { sha256: string; md5: string; crc32c: string }) => ({
    name: `obj-${id}`, size, ...d, contentType: 'application/octet-stream', owner: 'dev', project: '',
    createdAt: new Date().toISOString(), expires: null, protocol: 'test', blob: d.sha256,
  });

  it('commits only durable bytes, in order, while timer commits and flushes interleave', async () => {
    const id = await newUpload();
    const data = patternBytes(3 * 1024 * KiB, 5);
    const writer = await engine.openWriter(id);
    const observed: number[] = [];
    for (let off = 0; off < data.length; off += 48 * KiB) {
      await writer.write(Buffer.from(data.subarray(off, off + 48 * KiB)));
      if (off % (480 * KiB) === 0) await writer.flush();
      const s = await sessions.get(id);
      observed.push(s?.committed ?? -1);
      expect(await storage.stagingSize(id)).toBeGreaterThanOrEqual(s?.committed ?? 0);
    }
    expect(observed).toEqual([...observed].sort((a, b) => a - b)); // never decreases
    const object = await writer.finish({}, describeObject(id));
    expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(object.md5).toBe(createHash('md5').update(data).digest('hex'));
    expect(object.size).toBe(data.length);
  });

  /** An engine over a slow disk and a slow hashing thread, committing by timer every `fsyncIntervalMs`. */
  async function withSlowEngine(on: SessionStore, fsyncIntervalMs: number, run: (slow: UploadEngine) => Promise<void>): Promise<void> {
    const slowPool = new SlowHashPool(1);
    try {
      await run(new UploadEngine(on, new SlowSyncStorage(dir.path), catalog, slowPool, { fsyncBytes: 1 << 30, fsyncIntervalMs, maxInFlightBytes: 64 << 20 }));
    } finally {
      await slowPool.close();
    }
  }

  it('digests every byte on finish, even bytes a slow background commit already covered', async () => {
    // A slow fsync and a slow hashing thread: chunk B is written while a commit waits on the disk,
    // so that commit covers B before B reaches the hasher. finish() must still wait for B's hash.
    await withSlowEngine(sessions, 60_000, async (slow) => {
      const id = await newUpload();
      const data = patternBytes(512 * KiB, 9);
      const writer = await slow.openWriter(id);
      await writer.write(Buffer.from(data.subarray(0, 256 * KiB)));
      const flushing = writer.flush(); // waits for A's hash (300 ms), then for the disk (150 ms)
      await sleep(350);
      await writer.write(Buffer.from(data.subarray(256 * KiB))); // B: on disk at once, hashed 300 ms later
      expect(await flushing).toBe(data.length); // the commit covered B
      const object = await writer.finish({}, describeObject(id));
      expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
      expect(object.md5).toBe(createHash('md5').update(data).digest('hex'));
    });
  });

  it('never runs a final commit beside a timer\'s commit (both would compare-and-set from the same size)', async () => {
    // finish() waits for the hasher; meanwhile the commit timer fires and starts a commit of its own.
    // Each compare-and-set takes 100 ms, so two commits that ran side by side would both send one.
    class SlowCommitSessions extends SessionStore {
      override async commit(...args: Parameters<SessionStore['commit']>): Promise<void> {
        await sleep(100);
        return super.commit(...args);
      }
    }
    const slowSessions = new SlowCommitSessions(redis, keys, { idleLifetimeMs: 60_000, leaseTtlMs: 1000 });
    await withSlowEngine(slowSessions, 50, async (slow) => {
      const id = await newUpload();
      const data = patternBytes(256 * KiB, 10);
      const writer = await slow.openWriter(id);
      await writer.write(Buffer.from(data));
      const object = await writer.finish({}, describeObject(id));
      expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    });
  });

  it('produces whole-content digests after a resume (the committed prefix is re-hashed)', async () => {
    const id = await newUpload();
    const data = patternBytes(700 * KiB, 6);
    const first = await engine.openWriter(id);
    await first.write(Buffer.from(data.subarray(0, 300 * KiB)));
    expect(await first.close()).toBe(300 * KiB);
    const second = await engine.openWriter(id);
    expect(second.committedSize).toBe(300 * KiB);
    await second.write(Buffer.from(data.subarray(300 * KiB)));
    const object = await second.finish({ size: data.length }, describeObject(id));
    expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('fences out a writer whose lease was lost: it can neither commit nor keep writing', async () => {
    const id = await newUpload();
    const writer = await engine.openWriter(id);
    await writer.write(Buffer.from(patternBytes(100 * KiB, 7)));
    await writer.flush();
    await redis.del(keys.uploadLease(id)); // the lease vanishes (expired while the writer stalled)
    const usurper = await sessions.acquireLease(id);
    await expect(async () => {
      for (let i = 0; i < 20; i++) {
        await writer.write(Buffer.from(patternBytes(64 * KiB, 8)));
        await writer.flush();
      }
    }).rejects.toBeInstanceOf(ConcurrentWriterError);
    expect((await sessions.get(id))?.committed).toBe(100 * KiB);
    await writer.close();
    await sessions.releaseLease(usurper);
  });

  it('discards everything on a failed verification', async () => {
    const id = await newUpload();
    const writer = await engine.openWriter(id);
    await writer.write(Buffer.from('hello'));
    await expect(writer.finish({ sha256: 'f'.repeat(64) }, describeObject(id))).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await sessions.get(id)).toBeUndefined();
    expect(await storage.stagingSize(id)).toBeUndefined();
  });
});
