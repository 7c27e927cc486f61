import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { setTimeout as sleep } from 'node:timers/promises';
import { Catalog } from '@ferry/catalog';
import { ConcurrentWriterError, InvalidArgumentError } from '@ferry/errors';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import { FsStorage, StagingFile } from '@ferry/storage';
import { TempDir, TestRedis, patternBytes, startTestRedis, tempDir, waitFor } from '@ferry/testing';
import { DigestAlgorithm, DigestNeeds, Digests, HashPool, OffloadedHasher, ResumableOptions, crc32cHex } from './hashing';
import { nativeStates, resumableHashing } from './resumable-hash';
import { UploadEngine } from './upload-engine';

const KiB = 1024;

/**
 * Long enough that no lease expires while a busy machine runs a test; a lost lease is made by
 * deleting its key.
 */
const LEASE_TTL_MS = 60_000;

/** A point where work waits until the test opens it; `reached` resolves when something first waits there. */
class Gate {
  private release!: () => void;
  private arrive!: () => void;
  private readonly opened = new Promise<void>((resolve) => (this.release = resolve));
  readonly reached = new Promise<void>((resolve) => (this.arrive = resolve));

  async pass(): Promise<void> {
    this.arrive();
    await this.opened;
  }

  open(): void {
    this.release();
  }
}

/** What a slow device waits before each step: a fixed delay, or a gate the test opens. */
type Delay = () => Promise<void>;

/** Local disk whose fsync is slow (so that writes land while a commit waits on it). */
class SlowSyncStorage extends FsStorage {
  constructor(
    path: string,
    private readonly delay: Delay = () => sleep(150),
  ) {
    super(path);
  }

  override async openStaging(uploadId: string, size: number): Promise<StagingFile> {
    const file = await super.openStaging(uploadId, size);
    return Object.assign(Object.create(file) as StagingFile, {
      sync: async (final?: boolean) => {
        await this.delay();
        return file.sync(final);
      },
    });
  }
}

/** A hashing thread that takes each chunk late. */
class SlowHashPool extends HashPool {
  constructor(private readonly delay: Delay = () => sleep(300)) {
    super(1);
  }

  override offloaded<A extends DigestAlgorithm>(algos: A[], resumable?: ResumableOptions): OffloadedHasher<A> {
    const inner = super.offloaded(algos, resumable);
    return {
      update: async (chunk: Buffer) => {
        await this.delay();
        return inner.update(chunk);
      },
      digest: () => inner.digest(),
      save: () => inner.save(),
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
    sessions = new SessionStore(redis, keys, { idleLifetimeMs: 60_000, leaseTtlMs: LEASE_TTL_MS });
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

  const describeObject = (id: string) => (size: number, d: Digests) => ({
    name: `obj-${id}`,
    size,
    ...d,
    contentType: 'application/octet-stream',
    owner: 'dev',
    project: '',
    createdAt: new Date().toISOString(),
    expires: null,
    protocol: 'test',
    blob: d.sha256,
  });

  it('commits only durable bytes, in order, while timer commits and flushes interleave', async () => {
    const id = await newUpload();
    const data = patternBytes(3 * 1024 * KiB, 5);
    const writer = await engine.openWriter(id, ['md5']);
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
  async function withSlowEngine(
    on: SessionStore,
    fsyncIntervalMs: number,
    run: (slow: UploadEngine) => Promise<void>,
    delays: { sync?: Delay; hash?: Delay } = {},
  ): Promise<void> {
    const slowPool = new SlowHashPool(delays.hash);
    try {
      const slowStorage = new SlowSyncStorage(dir.path, delays.sync);
      await run(new UploadEngine(on, slowStorage, catalog, slowPool, { fsyncBytes: 1 << 30, fsyncIntervalMs, maxInFlightBytes: 64 << 20 }));
    } finally {
      await slowPool.close();
    }
  }

  it('digests every byte on finish, even bytes a slow background commit already covered', async () => {
    // A commit waits on the disk (held at a gate) while chunk B is written, so that it covers B;
    // B's hash is held back until finish() has begun. finish() must still wait for B's hash.
    const disk = new Gate();
    let hashGate: Gate | undefined; // set once A is hashed: holds back B alone
    const delays = { sync: () => disk.pass(), hash: async () => hashGate?.pass() };
    await withSlowEngine(
      sessions,
      60_000,
      async (slow) => {
        const id = await newUpload();
        const data = patternBytes(512 * KiB, 9);
        const writer = await slow.openWriter(id, ['md5']);
        await writer.write(Buffer.from(data.subarray(0, 256 * KiB)));
        const flushing = writer.flush(); // waits for A's hash, then for the disk
        await disk.reached; // A is hashed; the commit waits on the disk
        const heldHash = new Gate();
        hashGate = heldHash;
        await writer.write(Buffer.from(data.subarray(256 * KiB))); // B: on disk at once, hashed when the test says
        await waitFor('B to be on disk', async () => (await storage.stagingSize(id)) === data.length);
        disk.open();
        expect(await flushing).toBe(data.length); // the commit covered B
        const finishing = writer.finish({}, describeObject(id));
        // a finish that did not wait for B's hash would ask for the digests meanwhile
        await sleep(100);
        heldHash.open();
        const object = await finishing;
        expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
        expect(object.md5).toBe(createHash('md5').update(data).digest('hex'));
      },
      delays,
    );
  });

  it("never runs a final commit beside a timer's commit (both would compare-and-set from the same size)", async () => {
    // finish() waits for the hasher; meanwhile the commit timer fires and starts a commit of its own.
    // Each compare-and-set takes 100 ms, so two commits that ran side by side would both send one.
    class SlowCommitSessions extends SessionStore {
      override async commit(...args: Parameters<SessionStore['commit']>): Promise<void> {
        await sleep(100);
        return super.commit(...args);
      }
    }
    const slowSessions = new SlowCommitSessions(redis, keys, { idleLifetimeMs: 60_000, leaseTtlMs: LEASE_TTL_MS });
    await withSlowEngine(slowSessions, 50, async (slow) => {
      const id = await newUpload();
      const data = patternBytes(256 * KiB, 10);
      const writer = await slow.openWriter(id);
      await writer.write(Buffer.from(data));
      const object = await writer.finish({}, describeObject(id));
      expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    });
  });

  it('produces whole-content digests after a resume', async () => {
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

  /**
   * Digests are saved in the session where the native addon is built (npm install builds it; the
   * resumable-hash spec fails where a C compiler could have built it and did not).
   */
  const whereSaved = nativeStates() ? it : it.skip;

  /** Local disk that records every read of staged bytes (a resumed writer re-hashing its committed prefix). */
  class CountingStorage extends FsStorage {
    readonly reads: string[] = [];
    override readStaging(uploadId: string, start: number, end: number) {
      this.reads.push(`${uploadId}:${start}-${end}`);
      return super.readStaging(uploadId, start, end);
    }
  }

  /** Two replicas: engines of their own (their own parked digests) over one Redis and one disk. */
  function replicas() {
    const counted = new CountingStorage(dir.path);
    const make = () => new UploadEngine(sessions, counted, catalog, pool, { fsyncBytes: 64 * KiB, fsyncIntervalMs: 1 });
    return { reads: counted.reads, here: make(), other: make() };
  }

  const digestsOf = (data: Buffer) => ({
    sha256: createHash('sha256').update(data).digest('hex'),
    md5: createHash('md5').update(data).digest('hex'),
    crc32c: crc32cHex(crc32c(data)),
  });

  /** Writes `data[from, to)` as one writer of `engine` (a tus PATCH) and closes it cleanly. */
  async function patch(engine: UploadEngine, id: string, data: Buffer, from: number, to: number, needs: DigestNeeds = ['md5', 'crc32c']) {
    const writer = await engine.openWriter(id, needs);
    expect(writer.committedSize).toBe(from);
    await writer.write(Buffer.from(data.subarray(from, to)));
    expect(await writer.close()).toBe(to);
  }

  /** The last writer: the rest of `data`, then the published object's digests. */
  async function last(engine: UploadEngine, id: string, data: Buffer, from: number, needs: DigestNeeds = ['md5', 'crc32c']) {
    const writer = await engine.openWriter(id, needs);
    expect(writer.committedSize).toBe(from);
    await writer.write(Buffer.from(data.subarray(from)));
    const object = await writer.finish({ size: data.length }, describeObject(id));
    return { sha256: object.sha256, md5: object.md5, crc32c: object.crc32c };
  }

  whereSaved(
    "continues the previous writer's digests on any replica from their state in the session, never re-reading the prefix (tus PATCHes)",
    async () => {
      const { reads, here, other } = replicas();
      const id = await newUpload();
      const data = patternBytes(1100 * KiB, 8);
      // small chunks (sha256 and crc32c on arrival, md5 on a pool thread) and one of 300 KiB (all on the pool thread)
      const cuts = [0, 100 * KiB, 400 * KiB, 600 * KiB, 800 * KiB, 900 * KiB];
      for (let i = 0; i < cuts.length - 1; i++) {
        // PATCHes spread over two replicas by a load balancer, each a new writer
        await patch(i % 2 === 0 ? here : other, id, data, cuts[i], cuts[i + 1]);
        const saved = JSON.parse((await sessions.get(id))?.writerDigests ?? '{}') as { at: number; needs: string };
        expect([saved.at, saved.needs]).toEqual([cuts[i + 1], 'crc32c,md5,sha256']);
      }
      // the prefix each writer's digests covered is hashed once, as it arrived: the staged bytes are never read back
      expect(reads).toEqual([]);
      // (the proof that they were not: the committed prefix on disk is damaged now; digests re-read from it would differ)
      const staged = join(dir.path, 'staging', id);
      const fd = openSync(staged, 'r+');
      writeSync(fd, Buffer.alloc(64 * KiB), 0, 64 * KiB, 10 * KiB);
      closeSync(fd);
      expect(await last(other, id, data, 900 * KiB)).toEqual(digestsOf(data));
      expect(reads).toEqual([]);
    },
  );

  whereSaved('re-hashes the prefix when the saved digests cover another committed size or other digests', async () => {
    const { reads, here, other } = replicas();
    const id = await newUpload();
    const data = patternBytes(600 * KiB, 11);
    await patch(here, id, data, 0, 100 * KiB);
    // other digests: md5 alone, where the state holds crc32c and md5
    await patch(other, id, data, 100 * KiB, 200 * KiB, ['md5']);
    expect(reads).toEqual([`${id}:0-${100 * KiB}`]);
    // another size: a writer that commits and then fails (as one whose process dies) leaves the state of its predecessor
    const failing = await here.openWriter(id, ['md5']);
    await failing.write(Buffer.from(data.subarray(200 * KiB, 300 * KiB)));
    expect(await failing.flush()).toBe(300 * KiB);
    expect(await failing.close(false)).toBe(300 * KiB);
    expect(JSON.parse((await sessions.get(id))?.writerDigests ?? '{}')).toMatchObject({ at: 200 * KiB, needs: 'md5,sha256' });
    await patch(other, id, data, 300 * KiB, 400 * KiB, ['md5']);
    expect(reads).toEqual([`${id}:0-${100 * KiB}`, `${id}:0-${300 * KiB}`]);
    // and the one after continues again
    expect(await last(here, id, data, 400 * KiB, ['md5'])).toMatchObject({ sha256: digestsOf(data).sha256, md5: digestsOf(data).md5 });
    expect(reads).toHaveLength(2);
  });

  whereSaved(
    're-hashes the prefix, to the right digests, when the saved state cannot be loaded (another backend or build, corrupt)',
    async () => {
      const { reads, here, other } = replicas();
      type Form = { at: number; needs: string; states: Record<string, unknown> };
      const savedForm = async (id: string) => JSON.parse((await sessions.get(id))?.writerDigests ?? '') as Form;
      /** Replaces the sha256 state, with a check over the new one: what another backend or build would have saved. */
      const replaceSha256 = async (id: string, state: (old: string) => Promise<string> | string) => {
        const form = await savedForm(id);
        form.states['sha256'] = await state(String(form.states['sha256']));
        const check = createHash('sha256')
          .update(`${form.at}|${form.needs}|${JSON.stringify(form.states)}`)
          .digest('hex')
          .slice(0, 32);
        await redis.hset(keys.upload(id), 'writerDigests', JSON.stringify({ ...form, check }));
      };
      const breakings: Record<string, (id: string, prefix: Buffer) => Promise<unknown>> = {
        'not saved digests': (id) => redis.hset(keys.upload(id), 'writerDigests', 'garbage'),
        // one character of a state changed: still a state's layout, which the addon would continue into a wrong digest
        altered: async (id) => {
          const saved = (await sessions.get(id))?.writerDigests ?? '';
          const at = saved.indexOf('"sha256":"openssl-') + 80;
          return redis.hset(keys.upload(id), 'writerDigests', saved.slice(0, at) + (saved[at] === 'A' ? 'B' : 'A') + saved.slice(at + 1));
        },
        'saved by hash-wasm': (id, prefix) =>
          replaceSha256(id, async () => {
            const digest = await resumableHashing('wasm').start('sha256');
            await digest.update([prefix]);
            return digest.save();
          }),
        'of another build': (id) => replaceSha256(id, (old) => old.replace(/^openssl-[^.]*/, 'openssl-0-md5:1-sha256:1')),
      };
      for (const [label, breakState] of Object.entries(breakings)) {
        reads.length = 0;
        const id = await newUpload();
        const data = patternBytes(300 * KiB, label.length);
        await patch(here, id, data, 0, 100 * KiB);
        await breakState(id, data.subarray(0, 100 * KiB));
        await patch(other, id, data, 100 * KiB, 200 * KiB);
        expect([label, reads]).toEqual([label, [`${id}:0-${100 * KiB}`]]);
        // the writer that re-hashed left good digests: the next one continues them
        expect([label, await last(here, id, data, 200 * KiB)]).toEqual([label, digestsOf(data)]);
        expect([label, reads]).toEqual([label, [`${id}:0-${100 * KiB}`]]);
      }
    },
  );

  whereSaved('never lets a writer that lost its lease overwrite the digests its successor saved', async () => {
    const { reads, here, other } = replicas();
    const id = await newUpload();
    const data = patternBytes(500 * KiB, 12);
    await patch(here, id, data, 0, 100 * KiB);
    const stale = await here.openWriter(id, ['md5', 'crc32c']);
    await stale.write(Buffer.from(data.subarray(100 * KiB, 200 * KiB)));
    expect(await stale.flush()).toBe(200 * KiB);
    const before = (await sessions.get(id))?.writerDigests;
    // its lease lapses (a paused process); a successor takes the upload, which waits for the lease only
    await redis.del(keys.uploadLease(id));
    const successor = await sessions.acquireLease(id);
    // the stale writer ends believing it is clean: its digests at 200 KiB are not kept
    expect(await stale.close()).toBe(200 * KiB);
    expect((await sessions.get(id))?.writerDigests).toBe(before);
    await sessions.releaseLease(successor);
    await patch(other, id, data, 200 * KiB, 300 * KiB);
    expect(reads).toEqual([`${id}:0-${200 * KiB}`]);
    expect(await last(here, id, data, 300 * KiB)).toEqual(digestsOf(data));
    expect(reads).toHaveLength(1);
  });

  it('parks digests that cannot be saved (sha512) for the next writer in this process; another replica re-hashes', async () => {
    const { reads, here, other } = replicas();
    const id = await newUpload();
    const data = patternBytes(1000 * KiB, 8);
    const needs: DigestNeeds = ['sha512'];
    const cuts = [0, 100 * KiB, 350 * KiB, 600 * KiB, 800 * KiB];
    for (let i = 0; i < cuts.length - 1; i++) {
      // (the third writer runs on the other replica: it re-hashes, and parks there)
      await patch(i === 2 ? other : here, id, data, cuts[i], cuts[i + 1], needs);
    }
    expect((await sessions.get(id))?.writerDigests).toBeUndefined();
    // writers 1 and 2 on `here` continued; 3 (other) re-read [0, 350 KiB); 4 (here: its parked digests are at 350 KiB, not 600) re-read
    expect(reads).toEqual([`${id}:0-${350 * KiB}`, `${id}:0-${600 * KiB}`]);
    const writer = await here.openWriter(id, needs);
    await writer.write(Buffer.from(data.subarray(800 * KiB)));
    const object = await writer.finish({ size: data.length }, describeObject(id));
    expect(reads).toHaveLength(2);
    expect(object.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(object.sha512).toBe(createHash('sha512').update(data).digest('hex'));
  });

  it('never continues digests of an upload discarded and made again under the same id (other content)', async () => {
    const id = await newUpload();
    const first = patternBytes(200 * KiB, 9);
    const writer = await engine.openWriter(id);
    await writer.write(Buffer.from(first));
    expect(await writer.close()).toBe(first.length);
    // expired by the worker (another process: this one is not told): the session and its bytes go
    expect(await sessions.beginExpiry(id, Date.now() + 1000)).toBe('expiring');
    await storage.deleteStaging(id);
    await sessions.endExpiry(id);
    await sleep(2); // (a new session is told from the old one by its creation time)
    await engine.getOrCreateSession({ id, name: `obj-${id}`, protocol: 'test', owner: 'dev' });
    // its first bytes written on another replica: this process's digests of the old content still cover that size
    const elsewhere = new UploadEngine(sessions, storage, catalog, pool, { fsyncBytes: 64 * KiB, fsyncIntervalMs: 1 });
    const second = patternBytes(300 * KiB, 10);
    const again = await elsewhere.openWriter(id);
    await again.write(Buffer.from(second.subarray(0, first.length)));
    expect(await again.close()).toBe(first.length);
    const last = await engine.openWriter(id);
    await last.write(Buffer.from(second.subarray(first.length)));
    const object = await last.finish({ size: second.length }, describeObject(id));
    expect(object.sha256).toBe(createHash('sha256').update(second).digest('hex'));
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

  it('computes digests by need: sha256 always, others when needed or declared only at the finish', async () => {
    const data = patternBytes(5 * 1024 * KiB + 3, 9);
    const hex = (algo: string) => createHash(algo).update(data).digest('hex');
    const crc = crc32cHex(crc32c(data));
    const write = async (needs: DigestNeeds) => {
      const id = await newUpload();
      const writer = await engine.openWriter(id, needs);
      for (let off = 0; off < data.length; off += 256 * KiB) await writer.write(Buffer.from(data.subarray(off, off + 256 * KiB)));
      return { id, writer };
    };
    const plain = await write([]);
    const bare = await plain.writer.finish({}, describeObject(plain.id));
    expect(bare).toMatchObject({ sha256: hex('sha256') });
    expect(bare.md5).toBeUndefined();
    expect(bare.crc32c).toBeUndefined();
    expect((await catalog.get(bare.name))?.md5).toBeUndefined();

    const needed = await write(['crc32c']);
    expect(await needed.writer.finish({}, describeObject(needed.id))).toMatchObject({ sha256: hex('sha256'), crc32c: crc });

    // declared at the finish, not computed on the way: one pass over the staged bytes verifies them
    const late = await write(['crc32c']);
    const object = await late.writer.finish({ md5: hex('md5'), sha512: hex('sha512'), declaredBy: 'the client' }, describeObject(late.id));
    expect(object).toMatchObject({ sha256: hex('sha256'), crc32c: crc, md5: hex('md5'), sha512: hex('sha512') });

    const wrong = await write([]);
    await expect(wrong.writer.finish({ md5: 'f'.repeat(32), declaredBy: 'the client' }, describeObject(wrong.id))).rejects.toThrow(
      /the client declares md5 f{32}, the content hashes to [0-9a-f]{32}/,
    );
    expect(await catalog.get(`obj-${wrong.id}`)).toBeUndefined();
    expect(await storage.stagingSize(wrong.id)).toBeUndefined();
  });
});
