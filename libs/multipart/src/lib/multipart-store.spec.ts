import { InvalidArgumentError } from '@ferry/errors';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { TestRedis, startTestRedis } from '@ferry/testing';
import { MultipartStore } from './multipart-store';

const PART = 5 * 1024 * 1024;
const MD5 = '0123456789abcdef0123456789abcdef';

/** MultipartStore on real Redis. */
describe('MultipartStore (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  let keys: RedisKeys;
  let store: MultipartStore;
  let n = 0;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    keys = new RedisKeys(server.prefix);
    store = new MultipartStore(redis, keys, { idleLifetimeMs: 600_000, leaseTtlMs: 30_000 });
  });

  afterAll(async () => {
    redis.disconnect();
    await server.stop();
  });

  /** A new upload of three parts (the last one short). */
  async function upload(): Promise<string> {
    const id = `mp_store${n++}`;
    await store.create(id, 'dev', `${id}-request`, {
      fileName: `${id}.bin`,
      contentType: 'application/octet-stream',
      contentMD5Hex: MD5,
      fileSizeBytes: 2 * PART + 10,
      partSizeBytes: PART,
    });
    return id;
  }

  describe('addPart', () => {
    it.each([
      ['past the last part', 4],
      ['far past the last part', 1000],
      ['0', 0],
      ['negative', -1],
      ['not an integer', 1.5],
    ])('refuses a part number %s with INVALID_ARGUMENT and changes nothing', async (_label, partNumber) => {
      const id = await upload();
      const before = await redis.hgetall(keys.upload(id));
      // as the API adds a part PUT straight to the bucket: with the md5 the bucket reports
      for (const observed of ['', MD5]) {
        const added = store.addPart(id, partNumber, MD5, observed);
        await expect(added).rejects.toThrow(InvalidArgumentError);
        await expect(added).rejects.toThrow('is out of range: this upload has parts 1 to 3');
      }
      expect(await redis.get(keys.uploadParts(id))).toBe('000');
      expect(await redis.hgetall(keys.upload(id))).toEqual(before);
      expect(await store.complete(id)).toEqual({ missing: [1, 2, 3] });
    });

    it.each([4, 1000, 0, -1, 1.5])('refuses to begin a PUT of part %s, taking no lease and changing nothing', async (partNumber) => {
      const id = await upload();
      const before = await redis.hgetall(keys.upload(id));
      const begun = store.beginPart(id, partNumber);
      await expect(begun).rejects.toThrow(InvalidArgumentError);
      await expect(begun).rejects.toThrow('is out of range: this upload has parts 1 to 3');
      expect(await redis.get(keys.uploadParts(id))).toBe('000');
      expect(await redis.hgetall(keys.upload(id))).toEqual(before);
      expect(await redis.exists(keys.uploadPartLease(id, partNumber))).toBe(0);
    });

    it('adds a part within range', async () => {
      const id = await upload();
      const lease = await store.beginPart(id, 3);
      await store.endPart(lease, MD5);
      expect(await store.addPart(id, 3, MD5)).toEqual({ ok: true });
      expect(await store.addPart(id, 1, MD5)).toEqual({ ok: false, reason: expect.stringMatching(/no bytes are stored for part 1/) });
      expect((await store.get(id))?.partsState).toBe('001');
    });
  });
});
