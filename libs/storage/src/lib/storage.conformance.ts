import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { SHA256_EMPTY, StagingFile, Storage } from './storage';

/** A fresh, empty store of one backend, as its spec makes it. */
export interface ConformanceStore {
  storage: Storage;
  /** Another instance over the same store: what a process started after a kill -9 of the first sees. */
  reopen(): Storage;
  /** Bytes the store holds for an upload's staging, superseded objects included (0 if none). */
  storedBytes(uploadId: string): Promise<number>;
  /**
   * What the death of a writer's process does to its open staging file, beyond losing what it
   * did not sync (the kernel closes a dead process's files, releasing their locks); nothing if omitted.
   */
  writerDies?(file: StagingFile): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * The behaviour every storage backend must have. Each backend's spec calls this with a factory
 * that returns a fresh, empty store.
 */
export function describeStorageConformance(
  label: string,
  make: () => Promise<ConformanceStore>,
  options: {
    /** Parts written through Ferry into one staging object (openStagingForParts). */
    parts: boolean;
    /** The size of the parts a sequential upload is stored in, if it is (S3). */
    partBytes?: number;
  },
): void {
  describe(`Storage conformance: ${label}`, () => {
    let store: ConformanceStore;
    let storage: Storage;

    beforeEach(async () => {
      store = await make();
      storage = store.storage;
    });

    afterEach(async () => {
      await store.cleanup();
    });

    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

    /** A part where the backend has parts (S3), else 1000 bytes: sizes of several units cross parts. */
    const u = options.partBytes ?? 1000;

    /** Waits (up to 5 s) until the store holds nothing of an upload but its staged bytes. */
    async function nothingSuperseded(uploadId: string): Promise<void> {
      const staged = (await storage.stagingSize(uploadId)) ?? 0;
      for (let i = 0; i < 250 && (await store.storedBytes(uploadId)) !== staged; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await store.storedBytes(uploadId)).toBe(staged);
    }

    it('writes staging in order, syncs, and reads ranges back', async () => {
      const f = await storage.openStaging('up1', 0);
      const data = randomBytes(Math.floor(u * 3.5));
      for (let at = 0; at < data.length; at += 40_000) await f.write(data.subarray(at, at + 40_000), at);
      expect(await f.sync(true)).toBe(data.length);
      await f.close();
      expect(await storage.stagingSize('up1')).toBe(data.length);
      expect(await collect(storage.readStaging('up1', 1000, data.length - 7))).toEqual(data.subarray(1000, data.length - 7));
    });

    it('writes a list of buffers back to back (vectored), more of them than one system call takes', async () => {
      const f = await storage.openStaging('vectored', 0);
      const data = randomBytes(Math.floor(u * 1.5) + 3000);
      // 1500 pieces (IOV_MAX is 1024), some of them empty, then the rest as a second list
      const pieces: Buffer[] = [];
      let at = 0;
      for (let i = 0; i < 1500; i++) {
        const length = i % 7 === 0 ? 0 : 2;
        pieces.push(data.subarray(at, at + length));
        at += length;
      }
      await f.write(pieces, 0);
      await f.write([data.subarray(at, at + 1000), data.subarray(at + 1000)], at);
      expect(await f.sync(true)).toBe(data.length);
      await f.close();
      expect(await collect(storage.readStaging('vectored', 0, data.length))).toEqual(data);
    });

    it('makes everything written durable on sync, below a part too', async () => {
      const f = await storage.openStaging('below', 0);
      const third = randomBytes(Math.floor(u / 3));
      await f.write(third, 0);
      expect(await f.sync()).toBe(third.length);
      expect(await storage.stagingSize('below')).toBe(third.length);
      expect(await f.sync()).toBe(third.length); // nothing new
      // past two parts: a sync answers everything, or (S3) the boundary of the parts that just
      // reached the store, and then the next one everything
      const more = randomBytes(2 * u);
      await f.write(more, third.length);
      const total = third.length + more.length;
      const first = await f.sync();
      expect(first === total || (first % u === 0 && first > third.length && first < total)).toBe(true);
      expect(await f.sync()).toBe(total);
      expect(await storage.stagingSize('below')).toBe(total);
      expect(await f.sync(true)).toBe(total);
      await f.close();
      expect(await collect(storage.readStaging('below', 0, total))).toEqual(Buffer.concat([third, more]));
    });

    it('makes everything written durable with syncAll, also right after a part reached the store', async () => {
      const f = await storage.openStaging('all', 0);
      const data = randomBytes(u + Math.floor(u / 3));
      await f.write(data, 0);
      expect(await f.syncAll()).toBe(data.length);
      expect(await storage.stagingSize('all')).toBe(data.length);
      await f.close();
      expect(await collect(storage.readStaging('all', 0, data.length))).toEqual(data);
    });

    it('resumes exactly at a size synced below a part, on a new instance (as after kill -9), with the right bytes', async () => {
      const f = await storage.openStaging('crash', 0);
      const first = randomBytes(Math.floor(u / 3));
      const second = randomBytes(Math.floor(u / 4));
      await f.write(first, 0);
      expect(await f.sync()).toBe(first.length);
      await f.write(second, first.length);
      expect(await f.sync()).toBe(first.length + second.length);
      await f.write(randomBytes(7), first.length + second.length); // never synced
      // the writer dies; a new process sees only the store
      await store.writerDies?.(f);
      const committed = first.length + second.length;
      const after = store.reopen();
      expect(await after.stagingSize('crash')).toBeGreaterThanOrEqual(committed);
      const g = await after.openStaging('crash', committed);
      expect(await after.stagingSize('crash')).toBe(committed);
      expect(await collect(after.readStaging('crash', 0, committed))).toEqual(Buffer.concat([first, second]));
      const rest = randomBytes(u); // crosses the part the tail lay in
      await g.write(rest, committed);
      expect(await g.sync(true)).toBe(committed + rest.length);
      await g.close();
      await f.close();
      const whole = Buffer.concat([first, second, rest]);
      expect(await collect(after.readStaging('crash', 0, whole.length))).toEqual(whole);
      await after.publishStaging('crash', sha(whole));
      expect(await collect(after.readBlob(sha(whole), 0, whole.length))).toEqual(whole);
      expect(await store.storedBytes('crash')).toBe(0);
    });

    it('keeps whole parts and the tail after them through a crash, and continues after both', async () => {
      const f = await storage.openStaging('kept', 0);
      const head = randomBytes(2 * u + Math.floor(u / 4));
      await f.write(head, 0);
      const durable = await f.sync(); // (S3: the two parts, which just reached the store)
      expect(await f.syncAll()).toBe(head.length);
      const more = randomBytes(Math.floor(u / 4));
      await f.write(more, head.length);
      expect(await f.sync()).toBe(head.length + more.length);
      expect(durable).toBeLessThanOrEqual(head.length);
      const committed = head.length + more.length;
      // the writer dies; a new instance: the staged bytes, their size in a listing, and a writer resuming after them
      await store.writerDies?.(f);
      const after = store.reopen();
      expect(await after.stagingSize('kept')).toBe(committed);
      const listed = [];
      for await (const e of after.listStaging()) listed.push(e);
      expect(listed).toEqual([expect.objectContaining({ uploadId: 'kept', size: committed })]);
      expect(await collect(after.readStaging('kept', 0, committed))).toEqual(Buffer.concat([head, more]));
      const g = await after.openStaging('kept', committed);
      const rest = randomBytes(u);
      await g.write(rest, committed);
      expect(await g.sync(true)).toBe(committed + rest.length);
      await g.close();
      await f.close();
      const whole = Buffer.concat([head, more, rest]);
      expect(await collect(after.readStaging('kept', 0, whole.length))).toEqual(whole);
      await nothingSuperseded('kept');
    });

    it('keeps nothing superseded once the part a tail lay in is whole', async () => {
      const f = await storage.openStaging('superseded', 0);
      const data = randomBytes(2 * u);
      const tail = Math.floor(u / 2);
      await f.write(data.subarray(0, tail), 0);
      expect(await f.sync()).toBe(tail);
      await f.write(data.subarray(tail, u + tail), tail); // the part fills, and more follows
      expect(await f.syncAll()).toBe(u + tail);
      await nothingSuperseded('superseded'); // before close: as soon as the part is in
      await f.write(data.subarray(u + tail), u + tail);
      expect(await f.sync(true)).toBe(data.length);
      await f.close();
      await nothingSuperseded('superseded');
      expect(await store.storedBytes('superseded')).toBe(data.length);
    });

    it('publishes a staging object that ends in a tail (never synced as final)', async () => {
      for (const [id, size] of [
        ['tail-only', Math.floor(u / 2)],
        ['parts-and-tail', 2 * u + Math.floor(u / 2)],
      ] as const) {
        const data = randomBytes(size);
        const f = await storage.openStaging(id, 0);
        const cut = size - Math.floor(u / 5);
        await f.write(data.subarray(0, cut), 0);
        await f.syncAll();
        await f.write(data.subarray(cut), cut);
        expect(await f.syncAll()).toBe(size); // the tail in two syncs: on S3, two pieces
        await f.close();
        await storage.publishStaging(id, sha(data));
        expect(await storage.blobSize(sha(data))).toBe(size);
        expect(await collect(storage.readBlob(sha(data), 0, size))).toEqual(data);
        expect(await storage.stagingSize(id)).toBeUndefined();
        expect(await store.storedBytes(id)).toBe(0);
      }
    });

    it('cuts uncommitted bytes when reopening at a committed size, and continues from there', async () => {
      const f = await storage.openStaging('up2', 0);
      const data = randomBytes(3 * u);
      await f.write(data, 0);
      expect(await f.sync()).toBe(3 * u);
      await f.close();
      const g = await storage.openStaging('up2', u); // only u bytes were committed
      const next = randomBytes(Math.floor(u / 2));
      await g.write(next, u);
      expect(await g.sync(true)).toBe(u + next.length);
      await g.close();
      expect(await collect(storage.readStaging('up2', 0, u + next.length))).toEqual(Buffer.concat([data.subarray(0, u), next]));
      expect(await storage.stagingSize('up2')).toBe(u + next.length);
    });

    it('loses bytes written but never synced when the writer goes away', async () => {
      const f = await storage.openStaging('unsynced', 0);
      const data = randomBytes(u + 10);
      await f.write(data, 0);
      const durable = await f.sync();
      await f.write(randomBytes(5), data.length);
      await f.close();
      // whatever is staged beyond the durable size is cut by the next open at that size
      const g = await storage.openStaging('unsynced', durable);
      expect(await g.sync(true)).toBe(durable);
      await g.close();
      expect(await collect(storage.readStaging('unsynced', 0, durable))).toEqual(data.subarray(0, durable));
    });

    it('refuses to open staging at a size beyond the bytes it holds', async () => {
      const f = await storage.openStaging('short', 0);
      await f.write(Buffer.from('abc'), 0);
      await f.sync(true);
      await f.close();
      await expect(storage.openStaging('short', 10)).rejects.toThrow(/10 bytes committed but only 3 staged/);
      expect(await storage.stagingSize('short')).toBe(3);
    });

    /** Writes 'ab' with a guard that passes, then 'cd' with one that refuses; returns how often a guard ran. */
    async function guardedWrites(f: StagingFile): Promise<number> {
      let checked = 0;
      await f.write(Buffer.from('ab'), 0, () => void checked++);
      await expect(
        f.write(Buffer.from('cd'), 2, () => {
          throw new Error('lease lapsed');
        }),
      ).rejects.toThrow('lease lapsed');
      return checked;
    }

    it('runs a write guard right before writing, and writes nothing when it refuses', async () => {
      const f = await storage.openStaging('guarded', 0);
      expect(await guardedWrites(f)).toBe(1);
      expect(await f.sync(true)).toBe(2);
      await f.close();
      expect(await collect(storage.readStaging('guarded', 0, 2))).toEqual(Buffer.from('ab'));
    });

    if (options.parts) {
      it('writes parts of a fixed-size staging object independently, in any order, from several writers', async () => {
        const data = randomBytes(250_000);
        const parts = [0, 100_000, 200_000].map((start) => data.subarray(start, start + 100_000));
        const [a, b] = await Promise.all([
          storage.openStagingForParts('mp1', data.length),
          storage.openStagingForParts('mp1', data.length),
        ]);
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

      it('runs the guard of a part write right before writing, and writes nothing when it refuses', async () => {
        const f = await storage.openStagingForParts('mp2', 10);
        expect(await guardedWrites(f)).toBe(1);
        await f.close();
        expect(await collect(storage.readStaging('mp2', 0, 4))).toEqual(Buffer.from('ab\0\0'));
      });
    }

    it('publishes staging as a content-addressed blob, idempotently', async () => {
      const data = randomBytes(170_000); // several parts on S3 (whose tests use 64 KiB parts)
      const digest = sha(data);
      for (const id of ['a1', 'a2']) {
        const f = await storage.openStaging(id, 0);
        await f.write(data, 0);
        await f.sync(true);
        await f.close();
        await storage.publishStaging(id, digest);
        expect(await storage.stagingSize(id)).toBeUndefined();
      }
      expect(await storage.blobSize(digest)).toBe(data.length);
      expect(await collect(storage.readBlob(digest, 0, data.length))).toEqual(data);
      const chunks = await chunksOf(storage.readBlob(digest, 10, data.length, 16_384));
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
      const absent = sha(randomBytes(8));
      expect(await storage.blobSizes([digest, absent, SHA256_EMPTY, digest])).toEqual([5000, undefined, 0, 5000]);
      expect(await storage.blobSizes(Array.from({ length: 600 }, (_, i) => (i % 2 ? digest : absent)))).toEqual(
        Array.from({ length: 600 }, (_, i) => (i % 2 ? 5000 : undefined)),
      );
      expect(await collect(storage.readBlob(digest, 0, 5000))).toEqual(data);
      const leftovers = [];
      for await (const e of storage.listStaging()) leftovers.push(e);
      expect(leftovers).toEqual([]);
    });

    it('refuses to publish an upload that has no staged bytes', async () => {
      await expect(storage.publishStaging('nothing', 'a'.repeat(64))).rejects.toThrow(/no staged bytes/);
    });

    it('stages an empty upload, which publishes as the empty blob', async () => {
      const f = await storage.openStaging('empty', 0);
      expect(await f.sync(true)).toBe(0);
      await f.close();
      expect(await storage.stagingSize('empty')).toBe(0);
      await storage.publishStaging('empty', SHA256_EMPTY);
      expect(await storage.stagingSize('empty')).toBeUndefined();
    });

    it('fails plainly on what is not there: reading a missing blob or range, deleting twice', async () => {
      const missing = 'f'.repeat(64);
      expect(await storage.blobSize(missing)).toBeUndefined();
      await expect(collect(storage.readBlob(missing, 0, 10))).rejects.toThrow();
      await storage.deleteBlob(missing);
      await storage.deleteStaging('never-staged');
      expect(await storage.stagingSize('never-staged')).toBeUndefined();
      const f = await storage.openStaging('tiny', 0);
      await f.write(Buffer.from('abc'), 0);
      await f.sync(true);
      await f.close();
      await expect(collect(storage.readStaging('tiny', 0, 10))).rejects.toThrow();
    });

    it('lets clients PUT parts and GET blobs directly when the store offers it', async () => {
      const direct = storage.direct;
      if (!direct) return; // local disk: Ferry's own data plane serves clients
      const parts = [randomBytes(100_000), randomBytes(1234)];
      expect(await direct.stagingPart('direct', 0)).toBeUndefined();
      for (const [index, part] of parts.entries()) {
        const { url, headers } = await direct.stagingPartPutUrl('direct', index, {
          contentLength: part.length,
          contentType: 'application/x-part',
          expiresInSeconds: 60,
        });
        expect((await fetch(url, { method: 'PUT', headers, body: part })).status).toBe(200);
        expect(await direct.stagingPart('direct', index)).toEqual({ size: part.length, md5: createHash('md5').update(part).digest('hex') });
      }
      const whole = Buffer.concat(parts);
      expect(await storage.stagingSize('direct')).toBe(whole.length);
      // a snapshot keeps the parts as they were, whatever is PUT to the original afterwards
      await direct.snapshotStaging('direct', 'snapshot');
      const { url: again, headers: h0 } = await direct.stagingPartPutUrl('direct', 0, { contentLength: 5, expiresInSeconds: 60 });
      expect((await fetch(again, { method: 'PUT', headers: h0, body: Buffer.from('other') })).status).toBe(200);
      expect(sha(await collect(storage.readStaging('snapshot', 0, whole.length)))).toBe(sha(whole));
      await storage.deleteStaging('direct');
      await storage.publishStaging('snapshot', sha(whole));
      expect(await storage.stagingSize('snapshot')).toBeUndefined();
      const url = await direct.blobGetUrl(sha(whole), {
        expiresInSeconds: 60,
        contentType: 'text/x-test',
        fileName: 'r\u00e9sum\u00e9 "1".txt',
      });
      const got = await fetch(url, { headers: { range: 'bytes=99998-100001' } });
      expect(got.status).toBe(206);
      expect(Buffer.from(await got.arrayBuffer())).toEqual(whole.subarray(99_998, 100_002));
      expect(got.headers.get('content-type')).toBe('text/x-test');
      expect(got.headers.get('content-disposition')).toBe(
        `attachment; filename="r_sum_ _1_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.txt`,
      );
      const empty = await fetch(await direct.blobGetUrl(SHA256_EMPTY, { expiresInSeconds: 60 }));
      expect([empty.status, (await empty.arrayBuffer()).byteLength]).toEqual([200, 0]);
    });

    it('always has the empty blob', async () => {
      expect(await storage.blobSize(SHA256_EMPTY)).toBe(0);
      expect(await collect(storage.readBlob(SHA256_EMPTY, 0, 0))).toEqual(Buffer.alloc(0));
    });

    it('lists and deletes staging objects', async () => {
      const f = await storage.openStaging('listed', 0);
      await f.write(Buffer.from('abc'), 0);
      await f.sync(true);
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
