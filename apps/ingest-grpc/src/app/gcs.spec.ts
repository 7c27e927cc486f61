import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { Catalog } from '@ferry/catalog';
import type { BidiWriteObjectRequest, GcsObject__Output } from '@ferry/protocol';
import {
  bearer,
  bidiWrite,
  bucketResource,
  cancelResumableWrite,
  deleteObject,
  expectGrpcCode,
  expectSameBytes,
  gcsQueryWriteStatus,
  gcsRequests,
  getObject,
  patternBytes,
  readBytes,
  readObject,
  sha256Hex,
  startResumableWrite,
  uploadBytes,
  waitFor,
  writeObject,
  writeSpec,
} from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const MiB = 1024 * 1024;
let n = 0;
const objectName = (prefix = 'obj') => `${prefix}/${Date.now().toString(36)}-${n++}.bin`;
const md5 = (b: Buffer) => createHash('md5').update(b).digest();

describe('google.storage.v2 over gRPC (real Redis, disk and sockets)', () => {
  let h: IngestHarness;
  const bucket = 'ferry-test';

  beforeAll(async () => {
    h = await startIngest();
  });

  afterAll(async () => {
    await h.close();
  });

  const persisted = async (id: string) => Number((await gcsQueryWriteStatus(h.storage, id)).persisted_size);
  const resumable = (id: string, data: Buffer, o: Omit<Parameters<typeof gcsRequests>[1], 'first'> = {}) =>
    writeObject(h.storage, gcsRequests(data, { first: { upload_id: id }, ...o }));
  const single = (
    object: string,
    data: Buffer,
    o: Omit<Parameters<typeof gcsRequests>[1], 'first'> & { spec?: Parameters<typeof writeSpec>[2] } = {},
  ) => writeObject(h.storage, gcsRequests(data, { first: { write_object_spec: writeSpec(bucket, object, o.spec) }, ...o }));

  describe('resumable writes', () => {
    it('starts, writes over two streams, and finishes with the complete Object', async () => {
      const object = objectName();
      const data = patternBytes(7 * MiB + 5, 1);
      const startedAt = Date.now();
      const id = await startResumableWrite(h.storage, bucket, object, { contentType: 'text/x-test', metadata: { team: 'ferry' } });
      expect(id).toMatch(/^gcs_[A-Za-z0-9_-]{32}$/);
      expect(await persisted(id)).toBe(0);

      const half = await resumable(id, data.subarray(0, 3 * MiB), { finish: false, chunk: MiB });
      expect(half).toMatchObject({ write_status: 'persisted_size', persisted_size: 3 * MiB });
      expect(await persisted(id)).toBe(3 * MiB);

      const done = await writeObject(h.storage, gcsRequests(data, { first: { upload_id: id }, offset: 3 * MiB }));
      expect(done.write_status).toBe('resource');
      const resource = done.resource as GcsObject__Output;
      expect(resource).toMatchObject({
        name: object,
        bucket: bucketResource(bucket),
        size: data.length,
        content_type: 'text/x-test',
        metadata: { team: 'ferry' },
        metageneration: 1,
      });
      expect(resource.generation).toBeGreaterThan(Date.parse('2026-01-01') * 1000);
      // digests by need: crc32c always, md5 only when declared (none was)
      expect(resource.checksums?.crc32c).toBe(crc32c(data));
      expect(resource.checksums?.md5_hash ?? Buffer.alloc(0)).toHaveLength(0);
      // created during this test, however long a busy machine made it take
      expect(Number(resource.create_time?.seconds)).toBeGreaterThanOrEqual(Math.floor(startedAt / 1000));
      expect(Number(resource.create_time?.seconds)).toBeLessThanOrEqual(Date.now() / 1000);

      const status = await gcsQueryWriteStatus(h.storage, id);
      expect(status.write_status).toBe('resource');
      expect(status.resource?.generation).toBe(resource.generation);
      const catalogued = await h.app.get(Catalog).get(`${bucket}/${object}`);
      expect(catalogued).toMatchObject({ size: data.length, sha256: sha256Hex(data), protocol: 'gcs', generation: resource.generation });
      expect(catalogued?.md5).toBeUndefined();
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
      // one catalog: the same object by its catalog name over ByteStream
      expectSameBytes((await readBytes(h.client, `${bucket}/${object}`)).data, data);
    });

    it('accepts the whole object in the message that finishes it', async () => {
      const object = objectName();
      const id = await startResumableWrite(h.storage, bucket, object);
      const res = await resumable(id, Buffer.from('tiny'));
      expect(res.resource).toMatchObject({ name: object, size: 4 });
    });

    it('skips bytes sent again at a lower offset, and refuses an offset past what was sent', async () => {
      const object = objectName();
      const data = patternBytes(3 * MiB, 2);
      const id = await startResumableWrite(h.storage, bucket, object);
      const overlapping = [
        { upload_id: id, write_offset: 0, checksummed_data: { content: data.subarray(0, 2 * MiB) } },
        { write_offset: MiB, checksummed_data: { content: data.subarray(MiB, 2 * MiB) } }, // all old
        { write_offset: MiB + 10, checksummed_data: { content: data.subarray(MiB + 10, 3 * MiB) }, finish_write: true },
      ];
      expect((await writeObject(h.storage, overlapping)).resource?.size).toBe(data.length);
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);

      const other = await startResumableWrite(h.storage, bucket, objectName());
      await expectGrpcCode(
        writeObject(h.storage, [
          { upload_id: other, write_offset: 0, checksummed_data: { content: data.subarray(0, MiB) } },
          { write_offset: MiB + 1, checksummed_data: { content: data.subarray(MiB + 1, 2 * MiB) } },
        ]),
        grpc.status.INVALID_ARGUMENT,
        /write_offset 1048577 is past the 1048576 bytes sent/,
      );
      expect(await persisted(other)).toBe(MiB); // what came before the refusal is kept
    });

    it('resumes from a first offset below the persisted size, skipping the bytes it holds; refuses one past it', async () => {
      const object = objectName();
      const data = patternBytes(3 * MiB + 7, 21);
      const id = await startResumableWrite(h.storage, bucket, object);
      await resumable(id, data.subarray(0, 2 * MiB), { finish: false });
      // past the persisted size: bytes would be missing
      await expectGrpcCode(
        resumable(id, data, { offset: 2 * MiB + 1 }),
        grpc.status.INVALID_ARGUMENT,
        /persisted size 2097152.*QueryWriteStatus/,
      );
      // a client that restarts from its last checkpoint re-sends held bytes; they are skipped (not
      // written again, not checked: GCS keeps what it persisted), the rest lands after them
      const resent = Buffer.from(data);
      resent.fill(0xee, MiB, 2 * MiB); // what Ferry holds wins over what is sent again
      await resumable(id, resent.subarray(0, 2 * MiB + 5), { offset: MiB, finish: false });
      expect(await persisted(id)).toBe(2 * MiB + 5);
      const done = await resumable(id, data, { offset: 0, chunk: MiB });
      expect(done.resource).toMatchObject({ name: object, size: data.length });
      expect(done.resource?.checksums).toMatchObject({ crc32c: crc32c(data) });
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
    });

    it('resumes a BidiWriteObject below the persisted size too', async () => {
      const object = objectName();
      const data = patternBytes(2 * MiB + 3, 22);
      const id = await startResumableWrite(h.storage, bucket, object);
      await resumable(id, data.subarray(0, MiB + 1), { finish: false });
      const responses = await bidiWrite(h.storage, [
        ...gcsRequests(data, { first: { upload_id: id }, offset: MiB / 2, chunk: 256 * 1024 }),
      ]);
      expect(responses[responses.length - 1].resource).toMatchObject({ name: object, size: data.length });
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
      const other = await startResumableWrite(h.storage, bucket, objectName());
      await expectGrpcCode(
        bidiWrite(h.storage, [...gcsRequests(data, { first: { upload_id: other }, offset: 1 })]),
        grpc.status.INVALID_ARGUMENT,
        /persisted size 0/,
      );
    });

    it('refuses a message whose crc32c does not match, keeping the upload resumable', async () => {
      const object = objectName();
      const data = patternBytes(2 * MiB, 3);
      const id = await startResumableWrite(h.storage, bucket, object);
      await resumable(id, data.subarray(0, MiB), { finish: false });
      await expectGrpcCode(
        writeObject(h.storage, [{ upload_id: id, write_offset: MiB, checksummed_data: { content: data.subarray(MiB), crc32c: 12345 } }]),
        grpc.status.INVALID_ARGUMENT,
        /crc32c mismatch in the data at write_offset 1048576/,
      );
      expect(await persisted(id)).toBe(MiB);
      expect((await resumable(id, data, { offset: MiB })).resource?.size).toBe(data.length);
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
    });

    it('verifies whole-object checksums from StartResumableWrite and the last message', async () => {
      const data = patternBytes(MiB + 3, 4);
      const good = await startResumableWrite(h.storage, bucket, objectName(), { checksums: { crc32c: crc32c(data), md5_hash: md5(data) } });
      const verified = (await resumable(good, data, { checksums: { crc32c: crc32c(data) } })).resource;
      expect(verified).toMatchObject({ size: data.length, checksums: { crc32c: crc32c(data), md5_hash: md5(data) } });
      // an md5 declared only with finish_write: computed then (one pass over the staged bytes), verified, kept
      const lateName = objectName();
      const late = await startResumableWrite(h.storage, bucket, lateName);
      await resumable(late, data.subarray(0, MiB), { finish: false });
      const lateDone = (await resumable(late, data, { offset: MiB, checksums: { md5_hash: md5(data) } })).resource;
      expect(lateDone?.checksums).toMatchObject({ crc32c: crc32c(data), md5_hash: md5(data) });
      expect((await getObject(h.storage, bucket, lateName)).checksums).toMatchObject({ md5_hash: md5(data) });

      const object = objectName();
      const bad = await startResumableWrite(h.storage, bucket, object);
      await expectGrpcCode(
        resumable(bad, data, { checksums: { md5_hash: md5(Buffer.from('other')) } }),
        grpc.status.INVALID_ARGUMENT,
        /digest mismatch: object_checksums declares md5/,
      );
      await expectGrpcCode(getObject(h.storage, bucket, object), grpc.status.NOT_FOUND); // nothing published
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, bad), grpc.status.NOT_FOUND); // the upload is gone

      const zero = await startResumableWrite(h.storage, bucket, objectName(), { checksums: { crc32c: 0 } }); // 0 is a checksum too
      await expectGrpcCode(resumable(zero, data), grpc.status.INVALID_ARGUMENT, /declares crc32c 00000000/);

      const contradicting = await startResumableWrite(h.storage, bucket, objectName(), { checksums: { crc32c: crc32c(data) } });
      await expectGrpcCode(
        resumable(contradicting, data, { checksums: { crc32c: crc32c(data) + 1 } }),
        grpc.status.INVALID_ARGUMENT,
        /contradicts/,
      );

      await expectGrpcCode(
        startResumableWrite(h.storage, bucket, objectName(), { checksums: { md5_hash: Buffer.alloc(3) } }),
        grpc.status.INVALID_ARGUMENT,
        /16 bytes/,
      );
      const middle = await startResumableWrite(h.storage, bucket, objectName());
      await expectGrpcCode(
        writeObject(h.storage, [
          { upload_id: middle, write_offset: 0, checksummed_data: { content: data.subarray(0, 10) } },
          { write_offset: 10, checksummed_data: { content: data.subarray(10, 20) }, object_checksums: { crc32c: 1 } },
        ]),
        grpc.status.INVALID_ARGUMENT,
        /first message or with finish_write/,
      );
    });

    it('enforces object_size with OUT_OF_RANGE, too many bytes or too few, and keeps nothing', async () => {
      const data = patternBytes(2 * MiB, 5);
      const over = await startResumableWrite(h.storage, bucket, objectName(), { objectSize: MiB });
      await expectGrpcCode(resumable(over, data, { chunk: 512 * 1024 }), grpc.status.OUT_OF_RANGE, /object_size declares 1048576 bytes/);
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, over), grpc.status.NOT_FOUND);

      const object = objectName();
      const under = await startResumableWrite(h.storage, bucket, object, { objectSize: 3 * MiB });
      await expectGrpcCode(resumable(under, data), grpc.status.OUT_OF_RANGE, /3145728 bytes, the upload has 2097152/);
      await expectGrpcCode(getObject(h.storage, bucket, object), grpc.status.NOT_FOUND);

      const exact = await startResumableWrite(h.storage, bucket, objectName(), { objectSize: data.length });
      expect((await resumable(exact, data)).resource?.size).toBe(data.length);
      await expectGrpcCode(
        startResumableWrite(h.storage, bucket, objectName(), { objectSize: -1 }),
        grpc.status.INVALID_ARGUMENT,
        /negative/,
      );
    });

    it('refuses a second concurrent writer with ABORTED', async () => {
      const id = await startResumableWrite(h.storage, bucket, objectName());
      const data = patternBytes(4 * MiB, 6);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const first = writeObject(
        h.storage,
        (async function* () {
          yield { upload_id: id, write_offset: 0, checksummed_data: { content: data.subarray(0, MiB) } };
          await gate;
          yield { write_offset: MiB, checksummed_data: { content: data.subarray(MiB) }, finish_write: true };
        })(),
      );
      // the first writer holds the lease once its first MiB is persisted
      await waitFor('the first writer to persist its first MiB', async () => (await persisted(id)) === MiB);
      expect(await h.leased(id)).toBe(true);
      await expectGrpcCode(resumable(id, data, { offset: MiB }), grpc.status.ABORTED, /another writer/);
      release();
      expect((await first).resource?.size).toBe(data.length);
    });

    it('answers a finished upload id with its object, whether queried or written again', async () => {
      const object = objectName();
      const data = patternBytes(100_000, 7);
      const id = await startResumableWrite(h.storage, bucket, object);
      const done = await resumable(id, data);
      const again = await resumable(id, data); // the client lost the first response and retries
      expect(again.resource?.generation).toBe(done.resource?.generation);
      await expectGrpcCode(cancelResumableWrite(h.storage, id), grpc.status.FAILED_PRECONDITION, /finished/);
      await deleteObject(h.storage, bucket, object);
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, id), grpc.status.NOT_FOUND, /deleted/);
    });

    it('resumes after the client cancels mid-stream, from the persisted size', async () => {
      const object = objectName();
      const data = patternBytes(24 * MiB, 8);
      const id = await startResumableWrite(h.storage, bucket, object);
      const call = h.storage.WriteObject(bearer(), () => undefined);
      const sent = new Promise<void>((resolve) => {
        void (async () => {
          for (const req of gcsRequests(data.subarray(0, 12 * MiB), { first: { upload_id: id }, finish: false })) {
            if (!call.write(req)) await new Promise((r) => call.once('drain', r));
          }
          resolve();
        })();
      });
      await sent;
      // cancel mid-stream, once the server's writer holds the lease and has persisted a prefix
      let before = 0;
      await waitFor('the server to persist part of the stream', async () => (before = await persisted(id)) > 0);
      expect(await h.leased(id)).toBe(true);
      call.cancel();
      // the cancelled writer commits what it received, then releases its lease (released, not
      // expired: the lease TTL is longer than this wait); until then a resume would be ABORTED, or
      // refused at a persisted size that moved meanwhile
      await waitFor('the cancelled writer to release its lease', async () => !(await h.leased(id)));
      const at = await persisted(id);
      expect(at).toBeGreaterThanOrEqual(before);
      expect(at).toBeLessThanOrEqual(12 * MiB);
      expect((await resumable(id, data, { offset: at })).resource?.size).toBe(data.length);
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
    });
  });

  describe('QueryWriteStatus and CancelResumableWrite', () => {
    it('reports a non-decreasing persisted size while a stream writes', async () => {
      const id = await startResumableWrite(h.storage, bucket, objectName());
      const data = patternBytes(32 * MiB, 9);
      const seen: number[] = [];
      const polls: Promise<unknown>[] = [];
      const writing = resumable(id, data, { chunk: MiB });
      // a poll answered after the finish sees the object: its size is the persisted size then
      const poll = setInterval(() => {
        polls.push(
          gcsQueryWriteStatus(h.storage, id).then(
            (s) => seen.push(s.write_status === 'resource' ? Number(s.resource?.size) : Number(s.persisted_size)),
            () => undefined,
          ),
        );
      }, 5);
      await writing;
      clearInterval(poll);
      await Promise.all(polls); // every answer is in `seen`
      expect(seen.length).toBeGreaterThan(2);
      expect(seen.every((p) => Number.isInteger(p) && p >= 0 && p <= data.length)).toBe(true);
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    });

    it('answers NOT_FOUND for unknown, malformed and ByteStream ids', async () => {
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, `gcs_${'A'.repeat(32)}`), grpc.status.NOT_FOUND);
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, 'nope {x}'), grpc.status.NOT_FOUND);
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, ''), grpc.status.NOT_FOUND);
      await expectGrpcCode(writeObject(h.storage, [{ upload_id: `gcs_${'B'.repeat(32)}`, write_offset: 0 }]), grpc.status.NOT_FOUND);
    });

    it('cancels: the staged bytes are freed and the id is unknown afterwards', async () => {
      const id = await startResumableWrite(h.storage, bucket, objectName());
      await resumable(id, patternBytes(MiB), { finish: false });
      const staged = join(h.data.path, 'staging', id);
      expect(existsSync(staged)).toBe(true);
      await cancelResumableWrite(h.storage, id);
      expect(existsSync(staged)).toBe(false);
      await expectGrpcCode(gcsQueryWriteStatus(h.storage, id), grpc.status.NOT_FOUND);
      await expectGrpcCode(resumable(id, patternBytes(MiB), { offset: MiB }), grpc.status.NOT_FOUND);
      await expectGrpcCode(cancelResumableWrite(h.storage, id), grpc.status.NOT_FOUND);
    });
  });

  describe('single-stream writes', () => {
    it('writes with the spec in the first message and finish_write on the last', async () => {
      const object = objectName();
      const data = patternBytes(5 * MiB, 10);
      const res = await single(object, data, { chunk: MiB, spec: { contentType: 'image/png' } });
      expect(res.resource).toMatchObject({ name: object, size: data.length, content_type: 'image/png' });
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
    });

    it('writes a whole object in one message, and an empty one', async () => {
      expect((await single(objectName(), Buffer.from('one message'))).resource?.size).toBe(11);
      const empty = objectName();
      const res = await single(empty, Buffer.alloc(0));
      expect(res.resource).toMatchObject({ size: 0, checksums: { crc32c: 0 } });
      const read = await readObject(h.storage, bucket, empty);
      expect(read.data.length).toBe(0);
      expect(read.responses).toHaveLength(1);
      expect(read.responses[0].metadata?.size).toBe(0);
    });

    it('refuses a stream that ends without finish_write and stores nothing', async () => {
      const object = objectName();
      await expectGrpcCode(
        single(object, patternBytes(3 * MiB), { finish: false }),
        grpc.status.INVALID_ARGUMENT,
        /must end with finish_write/,
      );
      await expectGrpcCode(getObject(h.storage, bucket, object), grpc.status.NOT_FOUND);
    });

    it('refuses messages after finish_write before publishing anything, a missing first message, and a nonzero first offset', async () => {
      const object = objectName();
      const spec = { write_object_spec: writeSpec(bucket, object) };
      const after = { write_offset: 1, checksummed_data: { content: Buffer.from('b') } };
      await expectGrpcCode(
        writeObject(h.storage, [{ ...spec, write_offset: 0, checksummed_data: { content: Buffer.from('a') }, finish_write: true }, after]),
        grpc.status.INVALID_ARGUMENT,
        /after finish_write; nothing was published/,
      );
      await expectGrpcCode(getObject(h.storage, bucket, object), grpc.status.NOT_FOUND);
      // the same over several messages and over BidiWriteObject: no object, and a resumable upload stays resumable
      const data = patternBytes(MiB + 9, 23);
      await expectGrpcCode(
        writeObject(h.storage, [...gcsRequests(data, { first: spec, chunk: 256 * 1024 }), { write_offset: data.length }]),
        grpc.status.INVALID_ARGUMENT,
        /after finish_write/,
      );
      await expectGrpcCode(
        bidiWrite(h.storage, [...gcsRequests(data, { first: spec, chunk: 256 * 1024 }), { write_offset: data.length }]),
        grpc.status.INVALID_ARGUMENT,
        /after finish_write/,
      );
      const id = await startResumableWrite(h.storage, bucket, object);
      await expectGrpcCode(
        bidiWrite(h.storage, [...gcsRequests(data, { first: { upload_id: id }, chunk: 256 * 1024 }), { write_offset: data.length }]),
        grpc.status.INVALID_ARGUMENT,
        /after finish_write/,
      );
      await expectGrpcCode(getObject(h.storage, bucket, object), grpc.status.NOT_FOUND);
      expect(await h.app.get(Catalog).get(`${bucket}/${object}`)).toBeUndefined();
      expect(await persisted(id)).toBe(data.length);
      expect((await resumable(id, Buffer.alloc(0), { offset: data.length })).resource).toMatchObject({ name: object, size: data.length });
      await expectGrpcCode(
        writeObject(h.storage, [{ write_offset: 0, checksummed_data: { content: Buffer.from('a') } }]),
        grpc.status.INVALID_ARGUMENT,
        /upload_id or write_object_spec/,
      );
      await expectGrpcCode(writeObject(h.storage, []), grpc.status.INVALID_ARGUMENT, /empty write stream/);
      await expectGrpcCode(
        writeObject(h.storage, [{ ...spec, write_offset: 5, finish_write: true }]),
        grpc.status.INVALID_ARGUMENT,
        /offset 0/,
      );
    });
  });

  describe('generations, preconditions and immutability', () => {
    it('honours if_generation_match and if_generation_not_match, and keeps published objects immutable', async () => {
      const object = objectName();
      const data = Buffer.from('version one');
      const first = (await single(object, data, { spec: { ifGenerationMatch: 0 } })).resource as GcsObject__Output;
      await expectGrpcCode(
        single(object, data, { spec: { ifGenerationMatch: 0 } }),
        grpc.status.FAILED_PRECONDITION,
        /if_generation_match is 0/,
      );
      await expectGrpcCode(startResumableWrite(h.storage, bucket, object, { ifGenerationMatch: 0 }), grpc.status.FAILED_PRECONDITION);
      await expectGrpcCode(
        single(object, data, { spec: { ifGenerationMatch: Number(first.generation) + 1 } }),
        grpc.status.FAILED_PRECONDITION,
      );
      await expectGrpcCode(
        single(object, data, { spec: { ifGenerationNotMatch: Number(first.generation) } }),
        grpc.status.FAILED_PRECONDITION,
      );
      await expectGrpcCode(
        single(objectName(), data, { spec: { ifGenerationNotMatch: 0 } }),
        grpc.status.FAILED_PRECONDITION,
        /does not exist/,
      );
      // identical content is an idempotent success answering the existing generation
      const same = await single(object, data, { spec: { ifGenerationMatch: Number(first.generation) } });
      expect(same.resource?.generation).toBe(first.generation);
      // other content is refused: published objects are immutable
      await expectGrpcCode(single(object, Buffer.from('version two')), grpc.status.ALREADY_EXISTS, /different content/);
      // after a delete, the name takes a new, higher generation
      await deleteObject(h.storage, bucket, object, { if_generation_match: first.generation });
      const second = (await single(object, Buffer.from('version two'), { spec: { ifGenerationMatch: 0 } })).resource as GcsObject__Output;
      expect(Number(second.generation)).toBeGreaterThan(Number(first.generation));
      await expectGrpcCode(readObject(h.storage, bucket, object, { generation: first.generation }), grpc.status.NOT_FOUND);
      expect((await readObject(h.storage, bucket, object, { generation: second.generation })).data.toString()).toBe('version two');
    });

    it('checks preconditions again when the upload finishes', async () => {
      const object = objectName();
      const id = await startResumableWrite(h.storage, bucket, object, { ifGenerationMatch: 0 });
      await single(object, Buffer.from('someone else was faster'));
      await expectGrpcCode(resumable(id, Buffer.from('mine')), grpc.status.FAILED_PRECONDITION, /if_generation_match is 0/);
    });
  });

  describe('BidiWriteObject', () => {
    it('answers flush + state_lookup with the persisted size and finishes with the Object', async () => {
      const object = objectName();
      const data = patternBytes(10 * MiB + 17, 11);
      const id = await startResumableWrite(h.storage, bucket, object);
      const requests: BidiWriteObjectRequest[] = [...gcsRequests(data, { first: { upload_id: id }, chunk: 2 * MiB })].map((r) => ({
        ...r,
        ...(r.finish_write ? {} : { flush: true, state_lookup: true }),
      }));
      const responses = await bidiWrite(h.storage, requests);
      const sizes = responses.filter((r) => r.write_status === 'persisted_size').map((r) => Number(r.persisted_size));
      expect(sizes).toEqual([2, 4, 6, 8, 10].map((m) => m * MiB));
      const last = responses[responses.length - 1];
      expect(last.write_status).toBe('resource');
      expect(last.resource).toMatchObject({ name: object, size: data.length });
      expectSameBytes((await readObject(h.storage, bucket, object)).data, data);
    });

    it('answers a plain state_lookup with what is persisted so far, and the half-close with the persisted size', async () => {
      const id = await startResumableWrite(h.storage, bucket, objectName());
      const data = patternBytes(3 * MiB, 12);
      const responses = await bidiWrite(h.storage, [
        { upload_id: id, write_offset: 0, checksummed_data: { content: data.subarray(0, MiB) }, state_lookup: true },
        { write_offset: MiB, checksummed_data: { content: data.subarray(MiB) } },
      ]);
      expect(responses).toHaveLength(2);
      expect(Number(responses[0].persisted_size)).toBeLessThanOrEqual(MiB);
      expect(responses[1]).toMatchObject({ write_status: 'persisted_size', persisted_size: 3 * MiB });
      expect(await persisted(id)).toBe(3 * MiB);
    });

    it('writes a single-stream object and refuses one without finish_write', async () => {
      const object = objectName();
      const data = patternBytes(MiB, 13);
      const ok = await bidiWrite(h.storage, [
        ...gcsRequests(data, { first: { write_object_spec: writeSpec(bucket, object) }, chunk: 256 * 1024 }),
      ]);
      expect(ok[ok.length - 1].resource?.size).toBe(data.length);
      await expectGrpcCode(
        bidiWrite(h.storage, [...gcsRequests(data, { first: { write_object_spec: writeSpec(bucket, objectName()) }, finish: false })]),
        grpc.status.INVALID_ARGUMENT,
        /must end with finish_write/,
      );
    });

    it('refuses appendable objects as UNIMPLEMENTED', async () => {
      await expectGrpcCode(
        bidiWrite(h.storage, [
          { append_object_spec: { bucket: bucketResource(bucket), object: 'x', generation: 1 }, write_offset: 0, finish_write: true },
        ]),
        grpc.status.UNIMPLEMENTED,
      );
      await expectGrpcCode(
        bidiWrite(h.storage, [{ write_object_spec: { ...writeSpec(bucket, 'x'), appendable: true }, write_offset: 0, finish_write: true }]),
        grpc.status.UNIMPLEMENTED,
        /appendable/,
      );
    });
  });

  describe('ReadObject', () => {
    const object = 'reads/five-mib.bin';
    const data = patternBytes(5 * MiB + 3, 14);
    let resource: GcsObject__Output;

    beforeAll(async () => {
      resource = (await single(object, data, { checksums: { md5_hash: md5(data) } })).resource as GcsObject__Output;
    });

    it('streams chunks of at most 2 MiB, each with its crc32c, metadata and checksums on the first only', async () => {
      const { data: back, responses } = await readObject(h.storage, bucket, object);
      expectSameBytes(back, data);
      expect(responses.length).toBe(3);
      for (const r of responses) {
        const content = r.checksummed_data?.content as Buffer;
        expect(content.length).toBeLessThanOrEqual(2 * MiB);
        expect(r.checksummed_data?.crc32c).toBe(crc32c(content));
      }
      expect(responses[0].metadata).toMatchObject({ name: object, size: data.length, generation: resource.generation });
      expect(responses[0].object_checksums).toMatchObject({ crc32c: crc32c(data), md5_hash: md5(data) });
      expect(responses[0].content_range).toBeNull(); // no offset or limit asked
      expect(responses.slice(1).every((r) => r.metadata === null && r.content_range === null)).toBe(true);
    });

    it('reads ranges: offset, limit, negative offset from the end, with content_range', async () => {
      const ranged = await readObject(h.storage, bucket, object, { read_offset: 1000, read_limit: 3 * MiB });
      expectSameBytes(ranged.data, data.subarray(1000, 1000 + 3 * MiB));
      expect(ranged.responses[0].content_range).toEqual({ start: 1000, end: 1000 + 3 * MiB, complete_length: data.length });
      const tail = await readObject(h.storage, bucket, object, { read_offset: -10 });
      expectSameBytes(tail.data, data.subarray(data.length - 10));
      expect(tail.responses[0].content_range).toEqual({ start: data.length - 10, end: data.length, complete_length: data.length });
      expectSameBytes((await readObject(h.storage, bucket, object, { read_offset: -10 * MiB })).data, data);
      expectSameBytes((await readObject(h.storage, bucket, object, { read_limit: 10 })).data, data.subarray(0, 10));
      const atEnd = await readObject(h.storage, bucket, object, { read_offset: data.length });
      expect(atEnd.data.length).toBe(0);
      expect(atEnd.responses[0].metadata?.name).toBe(object);
    });

    it('refuses bad reads with precise codes', async () => {
      await expectGrpcCode(
        readObject(h.storage, bucket, object, { read_offset: data.length + 1 }),
        grpc.status.OUT_OF_RANGE,
        /past the end/,
      );
      await expectGrpcCode(readObject(h.storage, bucket, object, { read_limit: -1 }), grpc.status.INVALID_ARGUMENT, /read_limit/);
      await expectGrpcCode(readObject(h.storage, bucket, 'reads/missing'), grpc.status.NOT_FOUND);
      await expectGrpcCode(readObject(h.storage, bucket, object, { generation: 42 }), grpc.status.NOT_FOUND);
      await expectGrpcCode(readObject(h.storage, bucket, object, { if_generation_match: 42 }), grpc.status.FAILED_PRECONDITION);
      await expectGrpcCode(readObject(h.storage, 'Bad_Bucket', object), grpc.status.INVALID_ARGUMENT, /not a valid bucket name/);
      await expectGrpcCode(
        new Promise((resolve, reject) => {
          const call = h.storage.ReadObject({ bucket: 'buckets/x', object }, bearer());
          call.on('data', () => undefined);
          call.on('error', reject);
          call.on('end', resolve);
        }),
        grpc.status.INVALID_ARGUMENT,
        /projects\/_\/buckets/,
      );
    });

    it('gets the Object and deletes it under preconditions', async () => {
      const got = await getObject(h.storage, bucket, object);
      expect(got).toMatchObject({ name: object, size: data.length, generation: resource.generation });
      await expectGrpcCode(getObject(h.storage, bucket, object, { if_metageneration_match: 2 }), grpc.status.FAILED_PRECONDITION);
      const doomed = objectName();
      const d = (await single(doomed, Buffer.from('bye'))).resource as GcsObject__Output;
      await expectGrpcCode(
        deleteObject(h.storage, bucket, doomed, { if_generation_match: Number(d.generation) + 1 }),
        grpc.status.FAILED_PRECONDITION,
      );
      await deleteObject(h.storage, bucket, doomed);
      await expectGrpcCode(getObject(h.storage, bucket, doomed), grpc.status.NOT_FOUND);
      await expectGrpcCode(deleteObject(h.storage, bucket, doomed), grpc.status.NOT_FOUND);
    });

    it('deletes only objects it wrote: those of other protocols answer FAILED_PRECONDITION naming them, and stay', async () => {
      // a ByteStream object and a CAS blob whose catalog names parse as bucket/object
      const viaByteStream = objectName('bs');
      await uploadBytes(h.client, `${bucket}/${viaByteStream}`, Buffer.from('bytestream content'));
      const blob = Buffer.from('cas content');
      await uploadBytes(h.client, `uploads/u1/blobs/${sha256Hex(blob)}/${blob.length}`, blob);
      // a Taskcluster object (published by the object API, which runs in another process)
      const catalog = h.app.get(Catalog);
      const tcName = objectName('tc');
      await catalog.publish({
        name: `${bucket}/${tcName}`,
        size: 3,
        sha256: sha256Hex(Buffer.from('abc')),
        md5: md5(Buffer.from('abc')).toString('hex'),
        crc32c: crc32c(Buffer.from('abc')).toString(16).padStart(8, '0'),
        contentType: 'text/plain',
        owner: 'tc',
        project: 'p',
        createdAt: new Date().toISOString(),
        expires: '2999-01-01T00:00:00.000Z',
        protocol: 'object',
        blob: sha256Hex(Buffer.from('abc')),
      });
      const cases: [string, string, RegExp][] = [
        [bucket, viaByteStream, /published by ByteStream \(protocol bytestream\)/],
        ['blobs', `${sha256Hex(blob)}/${blob.length}`, /Remote Execution API CAS \(protocol bytestream-cas\)/],
        [bucket, tcName, /Taskcluster object API \(protocol object\)/],
      ];
      for (const [b, o, owner] of cases) {
        expect(await getObject(h.storage, b, o)).toMatchObject({ name: o }); // readable through this face
        await expectGrpcCode(deleteObject(h.storage, b, o), grpc.status.FAILED_PRECONDITION, owner);
        expect(await catalog.get(`${b}/${o}`)).toBeDefined();
      }
      expectSameBytes((await readBytes(h.client, `blobs/${sha256Hex(blob)}/${blob.length}`)).data, blob);
    });

    it('gives a name a higher generation each time it is written again after a delete', async () => {
      const object = objectName();
      const generations: number[] = [];
      for (let i = 0; i < 4; i++) {
        const written = (await single(object, Buffer.from(`version ${i}`))).resource as GcsObject__Output;
        generations.push(Number(written.generation));
        expect(Number((await getObject(h.storage, bucket, object)).generation)).toBe(generations[i]);
        await deleteObject(h.storage, bucket, object, { if_generation_match: written.generation });
      }
      expect([...generations].sort((a, b) => a - b)).toEqual(generations);
      expect(new Set(generations).size).toBe(4);
    });
  });

  describe('refusals', () => {
    it('validates names, metadata and unsupported features', async () => {
      await expectGrpcCode(startResumableWrite(h.storage, 'x', 'o'), grpc.status.INVALID_ARGUMENT, /not a valid bucket name/);
      await expectGrpcCode(startResumableWrite(h.storage, bucket, ''), grpc.status.INVALID_ARGUMENT, /object name is required/);
      await expectGrpcCode(startResumableWrite(h.storage, bucket, 'a\nb'), grpc.status.INVALID_ARGUMENT, /control character/);
      await expectGrpcCode(startResumableWrite(h.storage, bucket, 'x'.repeat(1025)), grpc.status.INVALID_ARGUMENT, /longer than 1024/);
      await expectGrpcCode(
        startResumableWrite(h.storage, bucket, 'm', { metadata: { k: 'v'.repeat(9000) } }),
        grpc.status.INVALID_ARGUMENT,
        /metadata/,
      );
      await expectGrpcCode(
        new Promise((resolve, reject) => h.storage.StartResumableWrite({}, bearer(), (err, res) => (err ? reject(err) : resolve(res)))),
        grpc.status.INVALID_ARGUMENT,
        /write_object_spec is required/,
      );
      await expectGrpcCode(
        writeObject(h.storage, [
          {
            write_object_spec: writeSpec(bucket, 'enc'),
            common_object_request_params: { encryption_algorithm: 'AES256' },
            write_offset: 0,
            finish_write: true,
          },
        ]),
        grpc.status.UNIMPLEMENTED,
        /encryption/,
      );
      await expectGrpcCode(
        new Promise((resolve, reject) =>
          h.storage.ListObjects({ parent: bucketResource(bucket) }, bearer(), (err, res) => (err ? reject(err) : resolve(res))),
        ),
        grpc.status.UNIMPLEMENTED,
      );
    });

    it('refuses calls without or with bad credentials', async () => {
      await expectGrpcCode(
        startResumableWrite(h.storage, bucket, 'o', {}, new grpc.Metadata()),
        grpc.status.UNAUTHENTICATED,
        /missing credentials/,
      );
      await expectGrpcCode(readObject(h.storage, bucket, 'o', {}, bearer('wrong-token')), grpc.status.UNAUTHENTICATED);
      await expectGrpcCode(writeObject(h.storage, [], bearer('wrong-token')), grpc.status.UNAUTHENTICATED);
    });
  });
});

describe('google.storage.v2 buckets and scopes', () => {
  let h: IngestHarness;

  beforeAll(async () => {
    h = await startIngest({
      FERRY_GCS_BUCKETS: 'builds,logs',
      FERRY_CLIENTS: JSON.stringify([
        { clientId: 'ci', accessToken: 'ci-token-1', scopes: ['ferry:write:builds/*', 'ferry:read:*'] },
        { clientId: 'viewer', accessToken: 'viewer-token', scopes: ['ferry:read:logs/*'] },
      ]),
    });
  });

  afterAll(async () => {
    await h.close();
  });

  it('accepts only the configured buckets', async () => {
    const id = await startResumableWrite(h.storage, 'builds', 'a.txt', {}, bearer('ci-token-1'));
    expect(id).toBeTruthy();
    await expectGrpcCode(
      startResumableWrite(h.storage, 'other', 'a.txt', {}, bearer('ci-token-1')),
      grpc.status.NOT_FOUND,
      /bucket other does not exist/,
    );
    await expectGrpcCode(readObject(h.storage, 'other', 'a.txt', {}, bearer('ci-token-1')), grpc.status.NOT_FOUND);
  });

  it('requires ferry:write:<bucket>/<object> to write and ferry:read:<bucket>/<object> to read', async () => {
    const data = Buffer.from('scoped');
    const write = (token: string, b: string, o: string) =>
      writeObject(h.storage, gcsRequests(data, { first: { write_object_spec: writeSpec(b, o) } }), bearer(token));
    expect((await write('ci-token-1', 'builds', 'ok.txt')).resource?.size).toBe(data.length);
    await expectGrpcCode(write('ci-token-1', 'logs', 'no.txt'), grpc.status.PERMISSION_DENIED, /ferry:write:logs\/no.txt/);
    await expectGrpcCode(write('viewer-token', 'builds', 'no.txt'), grpc.status.PERMISSION_DENIED);
    await expectGrpcCode(
      readObject(h.storage, 'builds', 'ok.txt', {}, bearer('viewer-token')),
      grpc.status.PERMISSION_DENIED,
      /ferry:read:builds\/ok.txt/,
    );
    expect((await readObject(h.storage, 'builds', 'ok.txt', {}, bearer('ci-token-1'))).data.toString()).toBe('scoped');
    // an upload id does not bypass scopes
    const id = await startResumableWrite(h.storage, 'builds', 'later.txt', {}, bearer('ci-token-1'));
    await expectGrpcCode(gcsQueryWriteStatus(h.storage, id, bearer('viewer-token')), grpc.status.PERMISSION_DENIED);
    await expectGrpcCode(deleteObject(h.storage, 'builds', 'ok.txt', {}, bearer('viewer-token')), grpc.status.PERMISSION_DENIED);
  });
});
