import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { SHA256_EMPTY, Storage } from './storage';

/**
 * The behaviour every storage backend must have. Each backend's spec calls this with a factory
 * that returns a fresh, empty storage.
 */
export function describeStorageConformance(label: string, make: () => Promise<{ storage: Storage; cleanup(): Promise<void> }>): void {
  describe(`Storage conformance: ${label}`, () => {
    let storage: Storage;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ storage, cleanup } = await make());
    });

    afterEach(async () => {
      await cleanup();
    });

    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

    it('writes staging at positions, syncs, and reads ranges back', async () => {
      const data = randomBytes(300_000);
      const f = await storage.openStaging('up1', 0);
      await Promise.all([f.write(data.subarray(100_000), 100_000), f.write(data.subarray(0, 100_000), 0)]);
      await f.sync();
      await f.close();
      expect(await storage.stagingSize('up1')).toBe(data.length);
      expect(await collect(storage.readStaging('up1', 1000, 200_000))).toEqual(data.subarray(1000, 200_000));
    });

    it('cuts uncommitted bytes when reopening at a committed size', async () => {
      const f = await storage.openStaging('up2', 0);
      await f.write(Buffer.from('hello world'), 0);
      await f.close();
      const g = await storage.openStaging('up2', 5);
      await g.write(Buffer.from('!'), 5);
      await g.close();
      expect((await collect(storage.readStaging('up2', 0, 6))).toString()).toBe('hello!');
      expect(await storage.stagingSize('up2')).toBe(6);
    });

    it('refuses to open staging at a size beyond the bytes it holds', async () => {
      const f = await storage.openStaging('short', 0);
      await f.write(Buffer.from('abc'), 0);
      await f.close();
      await expect(storage.openStaging('short', 10)).rejects.toThrow(/10 bytes committed but only 3 staged/);
      expect(await storage.stagingSize('short')).toBe(3);
    });

    it('writes parts of a fixed-size staging object independently, in any order, from several writers', async () => {
      const data = randomBytes(250_000);
      const parts = [0, 100_000, 200_000].map((start) => data.subarray(start, start + 100_000));
      const [a, b] = await Promise.all([storage.openStagingForParts('mp1', data.length), storage.openStagingForParts('mp1', data.length)]);
      expect(await storage.stagingSize('mp1')).toBe(data.length);
      await Promise.all([b.write(parts[2], 200_000), a.write(parts[0], 0)]);
      await Promise.all([a.sync(), b.sync()]);
      await Promise.all([a.close(), b.close()]);
      expect(await collect(storage.readStaging('mp1', 100_000, 100_010))).toEqual(Buffer.alloc(10));
      const c = await storage.openStagingForParts('mp1', data.length);
      await c.write(Buffer.alloc(100_000, 7), 100_000);
      await c.write(parts[1], 100_000); // a part written again replaces its bytes
      await c.sync();
      await c.close();
      expect(sha(await collect(storage.readStaging('mp1', 0, data.length)))).toBe(sha(data));
      await expect(storage.openStagingForParts('mp1', 10)).rejects.toThrow(/more than/);
      await storage.publishStaging('mp1', sha(data));
      expect(await storage.blobSize(sha(data))).toBe(data.length);
    });

    it('runs a write guard right before writing, and writes nothing when it refuses', async () => {
      const f = await storage.openStagingForParts('mp2', 10);
      let checked = 0;
      await f.write(Buffer.from('ab'), 0, () => void checked++);
      await expect(f.write(Buffer.from('cd'), 2, () => {
        throw new Error('lease lapsed');
      })).rejects.toThrow('lease lapsed');
      await f.close();
      expect(checked).toBe(1);
      expect(await collect(storage.readStaging('mp2', 0, 4))).toEqual(Buffer.from('ab\0\0'));
    });

    it('publishes staging as a content-addressed blob, idempotently', async () => {
      const data = randomBytes(70_000);
      const digest = sha(data);
      for (const id of ['a1', 'a2']) {
        const f = await storage.openStaging(id, 0);
        await f.write(data, 0);
        await f.sync();
        await f.close();
        await storage.publishStaging(id, digest);
        expect(await storage.stagingSize(id)).toBeUndefined();
      }
      expect(await storage.blobSize(digest)).toBe(data.length);
      expect(await collect(storage.readBlob(digest, 0, data.length))).toEqual(data);
      const chunks = await chunksOf(storage.readBlob(digest, 10, 70_000, 16_384));
      expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(16_384);
      expect(Buffer.concat(chunks)).toEqual(data.subarray(10));
      await storage.deleteBlob(digest);
      expect(await storage.blobSize(digest)).toBeUndefined();
    });

    it('stores a whole blob in one step, idempotently', async () => {
      const data = randomBytes(5000);
      const digest = sha(data);
      await storage.putBlob(data, digest);
      await storage.putBlob(data, digest);
      expect(await storage.blobSize(digest)).toBe(5000);
      expect(await collect(storage.readBlob(digest, 0, 5000))).toEqual(data);
      const leftovers = [];
      for await (const e of storage.listStaging()) leftovers.push(e);
      expect(leftovers).toEqual([]);
    });

    it('refuses to publish an upload that has no staged bytes', async () => {
      await expect(storage.publishStaging('nothing', 'a'.repeat(64))).rejects.toThrow(/no staged bytes/);
    });

    it('always has the empty blob', async () => {
      expect(await storage.blobSize(SHA256_EMPTY)).toBe(0);
      expect(await collect(storage.readBlob(SHA256_EMPTY, 0, 0))).toEqual(Buffer.alloc(0));
    });

    it('lists and deletes staging objects', async () => {
      const f = await storage.openStaging('listed', 0);
      await f.write(Buffer.from('abc'), 0);
      await f.close();
      const listed = [];
      for await (const e of storage.listStaging()) listed.push(e);
      expect(listed).toEqual([expect.objectContaining({ uploadId: 'listed', size: 3 })]);
      await storage.deleteStaging('listed');
      await storage.deleteStaging('listed');
      expect(await storage.stagingSize('listed')).toBeUndefined();
    });

    it('rejects ids and digests that could escape the storage root', async () => {
      await expect(storage.openStaging('../etc', 0)).rejects.toThrow(/invalid upload id/);
      await expect(storage.blobSize('../../x')).rejects.toThrow(/invalid sha256/);
    });

    it('reports itself ready', async () => {
      await expect(storage.check()).resolves.toBeUndefined();
    });
  });
}

async function chunksOf(stream: Readable): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return chunks;
}

async function collect(stream: Readable): Promise<Buffer> {
  return Buffer.concat(await chunksOf(stream));
}
