import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { FsStorage } from '@ferry/storage';
import { TempDir, TestRedis, patternBytes, startTestRedis, tempDir } from '@ferry/testing';
import { resumableHashing } from '@ferry/uploads';
import { DigestProgress } from './digest-progress';
import { MultipartStore } from './multipart-store';
import { type ResumableDigests, resumableDigests } from './resumable';

const PART = 64 * 1024;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * DigestProgress on real Redis and a real data directory: the whole-file digests advance over the
 * leading run of added parts, whatever order the parts land in, survive a process that dies holding
 * their lease, and never cover bytes a new PUT may have changed. (S3, where parts go straight to the
 * bucket, is tested through the API: apps/multipart-api/src/app/s3.spec.ts.)
 */
describe.each(['openssl', 'wasm'] as const)('DigestProgress (real Redis and files, %s hashing)', (backend) => {
  let server: TestRedis;
  let redis: Redis;
  let keys: RedisKeys;
  let data: TempDir;
  let storage: FsStorage;
  let store: MultipartStore;
  let digests: ResumableDigests;
  let progress: DigestProgress;
  const leaseTtlMs = 1500;
  let n = 0;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    keys = new RedisKeys(server.prefix);
    data = tempDir('ferry-digests');
    storage = new FsStorage(data.path);
    // a lease long enough for a busy machine everywhere but where a test lets one lapse on purpose
    store = new MultipartStore(redis, keys, { idleLifetimeMs: 600_000, leaseTtlMs: 30_000 });
    digests = resumableDigests(resumableHashing(backend));
    // rounds of two parts: a save in Redis every two parts
    progress = new DigestProgress(store, storage, digests, { leaseTtlMs, roundBytes: 2 * PART });
  });

  afterAll(async () => {
    await progress.idle();
    redis.disconnect();
    await server.stop();
    data.remove();
  });

  /** A new upload of `content` in parts of PART. */
  async function upload(content: Buffer): Promise<string> {
    const id = `mp_digest${n++}`;
    const request = {
      fileName: `${id}.bin`,
      contentType: 'application/octet-stream',
      contentMD5Hex: md5(content),
      fileSizeBytes: content.length,
      partSizeBytes: PART,
    };
    await store.create(id, 'dev', `${id}-request`, request);
    return id;
  }

  const part = (content: Buffer, p: number) => content.subarray((p - 1) * PART, p * PART);

  /** Part `p` PUT and added as multipart-api does it: under its lease, durable, then added with its md5. */
  async function land(id: string, content: Buffer, p: number, bytes = part(content, p)): Promise<void> {
    const lease = await store.beginPart(id, p);
    const file = await storage.openStagingForParts(id, content.length);
    try {
      await file.write(bytes, (p - 1) * PART);
      await file.sync();
    } finally {
      await file.close();
    }
    await store.endPart(lease, md5(bytes));
    expect(await store.addPart(id, p, md5(bytes))).toEqual({ ok: true });
  }

  /** How far the digests got, and whether their saved state is that of exactly those leading bytes. */
  async function hashed(id: string, content: Buffer): Promise<number> {
    const u = await store.get(id);
    const parts = u?.digest.parts ?? -1;
    if (parts > 0) {
      const prefix = content.subarray(0, parts * PART);
      expect(await digests.final(u?.digest.state ?? '')).toEqual({ md5: md5(prefix), sha256: sha256(prefix) });
    } else expect(u?.digest.state).toBeUndefined();
    return parts;
  }

  it('advances over the leading run of added parts, whatever order the parts land in, and finishes with the file digests', async () => {
    const content = patternBytes(6 * PART + 1000, 1); // 7 parts, the last short
    const id = await upload(content);
    const expected: [number, number][] = [
      [3, 0], // not the first: nothing to hash yet
      [1, 1],
      [2, 3], // 1..3 (in rounds of two)
      [7, 3],
      [5, 3],
      [4, 5],
      [6, 7],
    ];
    for (const [p, parts] of expected) {
      await land(id, content, p);
      expect(await progress.advance(id)).toBe('done');
      expect([p, await hashed(id, content)]).toEqual([p, parts]);
    }
    // the lease was released: nothing holds up the next process
    expect(await redis.exists(keys.uploadLease(id))).toBe(0);
    expect(await store.complete(id)).toEqual({ state: 'ASSEMBLING' });
    expect(await progress.finish(id)).toEqual({ md5: md5(content), sha256: sha256(content), source: id });
  });

  it('runs in the background after each part (kick), one run at a time, and catches up with every part added meanwhile', async () => {
    const content = patternBytes(9 * PART, 2);
    const id = await upload(content);
    for (const p of [2, 1, 4, 3, 6, 5, 8, 7, 9]) {
      await land(id, content, p);
      progress.kick(id);
    }
    await progress.idle();
    expect(await hashed(id, content)).toBe(9);
  });

  it('starts again from byte 0 when a hashed part is PUT again, and saves nothing of a round reading a part that changes', async () => {
    const content = patternBytes(4 * PART, 3);
    const id = await upload(content);
    for (const p of [1, 2, 3]) await land(id, content, p);
    await progress.advance(id);
    expect(await hashed(id, content)).toBe(3);
    // a new PUT of part 2 begins: the digests covered it, so they are void
    const other = Buffer.from(part(content, 2)).fill(0x5a, 100, 200);
    const changed = Buffer.concat([part(content, 1), other, content.subarray(2 * PART)]);
    await land(id, content, 2, other);
    expect((await store.get(id))?.digest).toEqual({ parts: 0 });
    await progress.advance(id);
    expect(await hashed(id, changed)).toBe(3);

    // a round is reading part 4 (added) when a new PUT of it begins: that round saves nothing
    await land(id, content, 4);
    const readStaging = storage.readStaging.bind(storage);
    let lease: Awaited<ReturnType<MultipartStore['beginPart']>> | undefined;
    storage.readStaging = (uploadId, start, end) =>
      Readable.from(
        (async function* () {
          for await (const chunk of readStaging(uploadId, start, end)) {
            yield chunk as Buffer;
            lease ??= await store.beginPart(id, 4);
          }
        })(),
      );
    try {
      expect(await progress.advance(id)).toBe('done');
    } finally {
      storage.readStaging = readStaging;
    }
    expect(lease).toBeDefined();
    expect(await hashed(id, changed)).toBe(3);
    await store.abortPart(lease as NonNullable<typeof lease>);
    await land(id, content, 4);
    await progress.advance(id);
    expect(await hashed(id, changed)).toBe(4);
  });

  it('resumes from the saved state when the process that saved it died holding the lease, once the lease lapses', async () => {
    const content = patternBytes(5 * PART + 7, 4);
    const id = await upload(content);
    for (const p of [1, 2, 3, 4, 5, 6]) await land(id, content, p);
    // a process takes the lease, hashes parts 1 and 2, saves, and is killed before its next round
    // (the save kept the lease for it: more parts were added)
    const begun = await store.digestBegin(id, 'killed', leaseTtlMs, 2, '');
    expect(begun).toMatchObject({ outcome: 'round', round: { hashed: 0, upTo: 2, state: '' } });
    const round = (begun as Extract<typeof begun, { outcome: 'round' }>).round;
    const state = await digests.advance(digests.start(), Readable.from([content.subarray(0, 2 * PART)]), () => undefined);
    expect(await store.digestSave(id, 'killed', leaseTtlMs, 2, round, 2, state)).toMatchObject({
      outcome: 'round',
      round: { hashed: 2, upTo: 4 },
    });
    // what it hashed is never read again: bytes changed behind Ferry's back there would show
    const fh = await open(join(data.path, 'staging', id), 'r+');
    await fh.write(Buffer.alloc(10, 0xff), 0);
    await fh.close();
    expect(await store.complete(id)).toEqual({ state: 'ASSEMBLING' });
    // the lease is still the dead process's: others wait (finish up to a deadline), then take over
    expect(await progress.advance(id)).toBe('busy');
    const t0 = Date.now();
    expect(await progress.finish(id, Date.now() + 100)).toBeUndefined();
    expect(await progress.finish(id)).toEqual({ md5: md5(content), sha256: sha256(content), source: id });
    expect(Date.now() - t0).toBeLessThan(leaseTtlMs + 5000);
  });

  it('starts again from byte 0 when the saved state cannot be loaded', async () => {
    const content = patternBytes(4 * PART, 5);
    const id = await upload(content);
    for (const p of [1, 2]) await land(id, content, p);
    await progress.advance(id);
    expect(await hashed(id, content)).toBe(2);
    // not a state; then a state of the other backend (as a replica of another build would leave)
    await redis.hset(keys.upload(id), 'dgState', 'bm90IGEgc3RhdGU');
    await land(id, content, 3);
    await progress.advance(id);
    expect(await hashed(id, content)).toBe(3);
    const other = resumableDigests(resumableHashing(backend === 'wasm' ? 'openssl' : 'wasm'));
    await redis.hset(
      keys.upload(id),
      'dgState',
      await other.advance(other.start(), Readable.from([content.subarray(0, 3 * PART)]), () => undefined),
    );
    await land(id, content, 4);
    await progress.advance(id);
    expect(await hashed(id, content)).toBe(4);
  });

  it('finishes with the right digests when the complete saved state cannot be loaded here (a rolling upgrade)', async () => {
    const content = patternBytes(2 * PART + 3, 6);
    const id = await upload(content);
    for (const p of [1, 2, 3]) await land(id, content, p);
    await progress.advance(id);
    expect(await hashed(id, content)).toBe(3);
    // another build's state of the whole file, wrong bytes even: it is not loaded, the file is hashed again
    const other = resumableDigests(resumableHashing(backend === 'wasm' ? 'openssl' : 'wasm'));
    await redis.hset(keys.upload(id), 'dgState', await other.advance(other.start(), Readable.from([Buffer.from('x')]), () => undefined));
    expect(await store.complete(id)).toEqual({ state: 'ASSEMBLING' });
    expect(await progress.finish(id)).toEqual({ md5: md5(content), sha256: sha256(content), source: id });
  });

  it('gives every new holder of the digest lease a higher fence, and the same one to a holder that goes on', async () => {
    const content = patternBytes(4 * PART, 7);
    const id = await upload(content);
    for (const p of [1, 2, 3, 4]) await land(id, content, p);
    const first = await store.digestBegin(id, 'first', 50, 1, '');
    const firstFence = first.outcome === 'round' ? first.round.fence : -1;
    expect(firstFence).toBeGreaterThan(0);
    expect(await store.digestBegin(id, 'first', 50, 1, '')).toMatchObject({ outcome: 'round', round: { fence: firstFence } });
    await new Promise((resolve) => setTimeout(resolve, 80)); // its lease lapses
    const second = await store.digestBegin(id, 'second', 5000, 1, '');
    expect(second.outcome === 'round' && second.round.fence).toBe(firstFence + 1);
    await store.digestRelease(id, 'second');
  });

  it('leaves an upload that is gone or settled alone', async () => {
    const content = patternBytes(PART, 6);
    const id = await upload(content);
    await land(id, content, 1);
    await store.delete(id);
    expect(await progress.advance(id)).toBe('settled');
    expect(await redis.exists(keys.uploadLease(id))).toBe(0);
  });
});
