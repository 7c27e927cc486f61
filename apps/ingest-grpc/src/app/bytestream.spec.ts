import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Catalog } from '@ferry/catalog';
import { REDIS, STORAGE } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import {
  bearer,
  chunkedRequests,
  expectGrpcCode,
  expectSameBytes,
  patternBytes,
  queryWriteStatus,
  randomName,
  readBytes,
  sha256Hex,
  uploadBytes,
  waitFor,
  writeRequests,
} from '@ferry/testing';
import { ByteStreamService } from '@ferry/bytestream';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const MiB = 1024 * 1024;
const EMPTY_SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('ByteStream over gRPC (real Redis, disk and sockets)', () => {
  let h: IngestHarness;

  beforeAll(async () => {
    h = await startIngest();
  });

  afterAll(async () => {
    await h.close();
  });

  const blobFiles = () =>
    readdirSync(join(h.data.path, 'blobs', 'sha256')).flatMap((d) => readdirSync(join(h.data.path, 'blobs', 'sha256', d)));

  describe('Write and Read', () => {
    it('stores a multi-chunk upload and reads back exactly the bytes sent', async () => {
      const name = randomName('builds/app');
      const data = patternBytes(9 * MiB + 123);
      expect(await uploadBytes(h.client, name, data)).toBe(data.length);
      const back = await readBytes(h.client, name);
      expect(sha256Hex(back.data)).toBe(sha256Hex(data));
      expect(Math.max(...back.chunks)).toBeLessThanOrEqual(2 * MiB);
      expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: data.length, complete: true });
      const object = await h.app.get(Catalog).get(name);
      expect(object).toMatchObject({ name, size: data.length, sha256: sha256Hex(data), protocol: 'bytestream', owner: 'dev' });
      // digests by need: ByteStream needs only the sha256
      expect(object?.md5).toBeUndefined();
      expect(object?.crc32c).toBeUndefined();
    });

    it('reads ranges with read_offset and read_limit', async () => {
      const name = randomName('range');
      const data = patternBytes(5 * MiB, 7);
      await uploadBytes(h.client, name, data);
      expectSameBytes((await readBytes(h.client, name, { offset: 1000, limit: 3 * MiB })).data, data.subarray(1000, 1000 + 3 * MiB));
      expectSameBytes((await readBytes(h.client, name, { offset: 4 * MiB })).data, data.subarray(4 * MiB));
      expectSameBytes((await readBytes(h.client, name, { offset: 10, limit: 10 * MiB })).data, data.subarray(10));
      expect((await readBytes(h.client, name, { offset: data.length })).data.length).toBe(0);
    });

    it('accepts messages above the 4 MiB grpc-js default (up to 16 MiB)', async () => {
      const name = randomName('big-msg');
      const data = patternBytes(12 * MiB, 3);
      expect(await writeRequests(h.client, chunkedRequests(name, data, { chunk: 12 * MiB }))).toBe(data.length);
      expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
      // several large messages in a row: each is handed to the hashing thread (its memory moves
      // there) before the next offset is checked
      const many = randomName('big-msgs');
      const more = patternBytes(40 * MiB, 4);
      expect(await writeRequests(h.client, chunkedRequests(many, more, { chunk: 8 * MiB }))).toBe(more.length);
      expect(sha256Hex((await readBytes(h.client, many)).data)).toBe(sha256Hex(more));
    });

    it.each([
      ['Bazel (name on the first message, finish on the last data message)', { nameOnEvery: false }],
      ['Buildbarn (name on every message)', { nameOnEvery: true }],
    ])('works with %s', async (_label, opts) => {
      const name = randomName('client-style');
      const data = patternBytes(100_000, 11);
      expect(await writeRequests(h.client, chunkedRequests(name, data, { chunk: 16 * 1024, ...opts }))).toBe(data.length);
      expectSameBytes((await readBytes(h.client, name)).data, data);
    });

    it('works with the Go client style (a final empty request with finish_write and the name)', async () => {
      const name = randomName('go-style');
      const data = patternBytes(50_000, 12);
      const requests = [
        ...chunkedRequests(name, data, { chunk: 20_000, finish: false }),
        { resource_name: name, write_offset: data.length, finish_write: true },
      ];
      expect(await writeRequests(h.client, requests)).toBe(data.length);
      expectSameBytes((await readBytes(h.client, name)).data, data);
    });

    it('accepts empty keep-alive messages', async () => {
      const name = randomName('keepalive');
      const requests = [
        { resource_name: name, write_offset: 0, data: Buffer.alloc(0) },
        { write_offset: 0, data: Buffer.from('abc') },
        { write_offset: 3, data: Buffer.alloc(0) },
        { write_offset: 3, data: Buffer.from('def'), finish_write: true },
      ];
      expect(await writeRequests(h.client, requests)).toBe(6);
      expect((await readBytes(h.client, name)).data.toString()).toBe('abcdef');
    });

    it('stores an empty generic object', async () => {
      const name = randomName('empty');
      expect(await writeRequests(h.client, [{ resource_name: name, write_offset: 0, finish_write: true }])).toBe(0);
      expect((await readBytes(h.client, name)).data.length).toBe(0);
    });
  });

  describe('resuming', () => {
    it('continues from committed_size on a new stream after a stream ends unfinished', async () => {
      const name = randomName('resume');
      const data = patternBytes(6 * MiB + 17, 5);
      const firstPart = 4 * MiB;
      const committed = await writeRequests(h.client, chunkedRequests(name, data.subarray(0, firstPart), { finish: false, chunk: MiB }));
      expect(committed).toBe(firstPart);
      expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: firstPart, complete: false });
      await expectGrpcCode(readBytes(h.client, name), grpc.status.NOT_FOUND); // nothing partial is visible
      expect(await writeRequests(h.client, chunkedRequests(name, data, { offset: firstPart, chunk: MiB }))).toBe(data.length);
      expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
    });

    it('keeps the durable prefix when the client cancels mid-stream, and resumes from it', async () => {
      const name = randomName('cancel');
      const uploadId = ByteStreamService.uploadId(name);
      const data = patternBytes(8 * MiB, 9);
      const call = h.client.Write(bearer(), () => undefined);
      call.on('error', () => undefined);
      for (const req of chunkedRequests(name, data.subarray(0, 5 * MiB), { finish: false, chunk: MiB })) {
        if (!call.write(req)) await new Promise((r) => call.once('drain', r));
      }
      // cancel mid-stream, once the server's writer holds the lease and has committed a prefix
      let before = 0;
      await waitFor(
        'the server to commit part of the stream',
        async () => (before = (await queryWriteStatus(h.client, name)).committed_size) > 0,
      );
      expect(await h.leased(uploadId)).toBe(true);
      call.cancel();
      // the cancelled writer commits what it received and releases its lease (released, not
      // expired: the lease TTL is longer than this wait)
      await waitFor('the cancelled writer to release its lease', async () => !(await h.leased(uploadId)));
      const status = await queryWriteStatus(h.client, name);
      expect(status.committed_size).toBeGreaterThanOrEqual(before);
      expect(status.committed_size).toBeLessThanOrEqual(5 * MiB);
      expect(status.complete).toBe(false);
      // the lease was released with the cancelled stream: resuming at once is allowed
      expect(await writeRequests(h.client, chunkedRequests(name, data, { offset: status.committed_size, chunk: MiB }))).toBe(data.length);
      expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
    });

    it('keeps a finished name complete while a client writes it again', async () => {
      const name = randomName('rewrite');
      const data = patternBytes(3 * MiB, 8);
      await writeRequests(h.client, chunkedRequests(name, data, { chunk: MiB }));
      // the same content again, from 0, left unfinished: the name is still complete at its size
      expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, MiB), { finish: false, chunk: MiB }))).toBe(MiB);
      expect(await queryWriteStatus(h.client, name)).toMatchObject({ committed_size: data.length, complete: true });
      // and a client that resumes from that answer is done
      expect(await writeRequests(h.client, [{ resource_name: name, write_offset: data.length, finish_write: true }])).toBe(data.length);
    });

    describe('an upload Ferry does not hold (never begun, or expired by the worker)', () => {
      const staged = () => (existsSync(join(h.data.path, 'staging')) ? readdirSync(join(h.data.path, 'staging')) : []);
      /** What the worker does to an idle upload (UploadExpiry), for this one upload. */
      async function expire(uploadId: string): Promise<void> {
        const sessions = h.app.get(SessionStore);
        expect(await sessions.beginExpiry(uploadId, Date.now() + 1000)).toBe('expiring');
        await h.app.get<Storage>(STORAGE).deleteStaging(uploadId);
        await sessions.endExpiry(uploadId);
      }
      /** A resume of `name` at `offset` is NOT_FOUND, and leaves no session and no staged bytes. */
      async function expectUnknown(name: string, offset: number, data: Buffer): Promise<void> {
        await expectGrpcCode(
          writeRequests(h.client, [{ resource_name: name, write_offset: offset, data }]),
          grpc.status.NOT_FOUND,
          new RegExp(`upload ${escapeRegExp(name)} not found: it is unknown or has expired; start it again at write_offset 0`),
        );
        expect(await h.app.get(SessionStore).exists(ByteStreamService.uploadId(name))).toBe(false);
        expect(staged()).not.toContain(ByteStreamService.uploadId(name));
      }

      it('refuses a resume of a generic name with NOT_FOUND and creates nothing; a write from 0 starts it', async () => {
        const name = randomName('unknown');
        await expectUnknown(name, 5, Buffer.from('x'));
        const data = patternBytes(2 * MiB, 71);
        expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, MiB), { finish: false }))).toBe(MiB);
        await expire(ByteStreamService.uploadId(name));
        await expectUnknown(name, MiB, data.subarray(MiB));
        await expectGrpcCode(queryWriteStatus(h.client, name), grpc.status.NOT_FOUND);
        expect(await writeRequests(h.client, chunkedRequests(name, data, { chunk: MiB }))).toBe(data.length);
        expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
      });

      it('refuses a resume of a REAPI upload with NOT_FOUND and creates nothing; a write from 0 starts it', async () => {
        const data = patternBytes(2 * MiB, 72);
        const name = `uploads/${randomName('uuid')}/blobs/${sha256Hex(data)}/${data.length}`;
        await expectUnknown(name, MiB, data.subarray(MiB));
        expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, MiB), { finish: false }))).toBe(MiB);
        await expire(ByteStreamService.uploadId(name));
        expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: 0, complete: false });
        await expectUnknown(name, MiB, data.subarray(MiB));
        expect(await writeRequests(h.client, chunkedRequests(name, data, { chunk: MiB }))).toBe(data.length);
        expectSameBytes((await readBytes(h.client, `blobs/${sha256Hex(data)}/${data.length}`)).data, data);
      });
    });

    it('never lets committed_size decrease across resumes', async () => {
      const name = randomName('monotonic');
      const data = patternBytes(3 * MiB, 21);
      const seen: number[] = [];
      for (let off = 0; off < data.length; off += MiB) {
        await writeRequests(
          h.client,
          chunkedRequests(name, data.subarray(0, off + MiB), { offset: off, finish: false, chunk: 256 * 1024 }),
        );
        seen.push((await queryWriteStatus(h.client, name)).committed_size);
      }
      expect(seen).toEqual([MiB, 2 * MiB, 3 * MiB]);
      await writeRequests(h.client, [{ resource_name: name, write_offset: data.length, finish_write: true }]);
      expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: data.length, complete: true });
    });
  });

  describe('refusals', () => {
    it('refuses a first write_offset other than the committed size', async () => {
      const name = randomName('bad-first');
      await writeRequests(h.client, [{ resource_name: name, write_offset: 0, data: Buffer.from('abc') }]);
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: name, write_offset: 1, data: Buffer.from('x') }]),
        grpc.status.INVALID_ARGUMENT,
        /committed size 3/,
      );
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: name, write_offset: -1, data: Buffer.from('x') }]),
        grpc.status.INVALID_ARGUMENT,
        /negative/,
      );
      expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: 3, complete: false });
    });

    it('refuses a gap in offsets', async () => {
      const name = randomName('gap');
      const requests = [
        { resource_name: name, write_offset: 0, data: Buffer.from('abc') },
        { write_offset: 4, data: Buffer.from('def'), finish_write: true },
      ];
      await expectGrpcCode(writeRequests(h.client, requests), grpc.status.INVALID_ARGUMENT, /not the next byte \(3\)/);
      await expectGrpcCode(readBytes(h.client, name), grpc.status.NOT_FOUND);
    });

    it('refuses a resource name that changes mid-stream', async () => {
      const name = randomName('rename');
      const requests = [
        { resource_name: name, write_offset: 0, data: Buffer.from('abc') },
        { resource_name: `${name}-other`, write_offset: 3, data: Buffer.from('def') },
      ];
      await expectGrpcCode(writeRequests(h.client, requests), grpc.status.INVALID_ARGUMENT, /resource_name changed/);
    });

    it('refuses data after finish_write', async () => {
      const name = randomName('after-finish');
      const requests = [
        { resource_name: name, write_offset: 0, data: Buffer.from('abc'), finish_write: true },
        { write_offset: 3, data: Buffer.from('def') },
      ];
      await expectGrpcCode(writeRequests(h.client, requests), grpc.status.INVALID_ARGUMENT, /after finish_write/);
    });

    it('refuses a first request without a resource name, and an empty stream', async () => {
      await expectGrpcCode(
        writeRequests(h.client, [{ write_offset: 0, data: Buffer.from('x') }]),
        grpc.status.INVALID_ARGUMENT,
        /resource_name is required/,
      );
      await expectGrpcCode(writeRequests(h.client, []), grpc.status.INVALID_ARGUMENT, /empty Write stream/);
    });

    it('refuses bad read offsets and limits', async () => {
      const name = randomName('read-bad');
      await uploadBytes(h.client, name, Buffer.from('0123456789'));
      await expectGrpcCode(readBytes(h.client, name, { offset: -1 }), grpc.status.OUT_OF_RANGE, /negative/);
      await expectGrpcCode(readBytes(h.client, name, { offset: 11 }), grpc.status.OUT_OF_RANGE, /past the end/);
      await expectGrpcCode(readBytes(h.client, name, { limit: -5 }), grpc.status.INVALID_ARGUMENT, /read_limit/);
    });

    it('answers NOT_FOUND for unknown resources', async () => {
      await expectGrpcCode(readBytes(h.client, 'no/such/object'), grpc.status.NOT_FOUND);
      await expectGrpcCode(queryWriteStatus(h.client, 'no/such/object'), grpc.status.NOT_FOUND);
      await expectGrpcCode(readBytes(h.client, `blobs/${'c'.repeat(64)}/10`), grpc.status.NOT_FOUND);
    });

    describe('NOT_FOUND names the resource the client sent, never an internal id', () => {
      const named = (name: string) => new RegExp(`^(upload )?${escapeRegExp(name)} not found`);

      it('on Read and QueryWriteStatus', async () => {
        const blob = `inst/blobs/${'c'.repeat(64)}/10`;
        await expectGrpcCode(readBytes(h.client, blob), grpc.status.NOT_FOUND, named(blob));
        await expectGrpcCode(readBytes(h.client, 'no/such/object'), grpc.status.NOT_FOUND, named('no/such/object'));
        await expectGrpcCode(queryWriteStatus(h.client, 'no/such/object'), grpc.status.NOT_FOUND, named('no/such/object'));
      });

      it('on a Write from 0 while the worker is expiring the upload', async () => {
        const name = randomName('expiring');
        const uploadId = ByteStreamService.uploadId(name);
        await writeRequests(h.client, [{ resource_name: name, write_offset: 0, data: Buffer.from('abc') }]);
        const sessions = h.app.get(SessionStore);
        expect(await sessions.beginExpiry(uploadId, Date.now() + 1000)).toBe('expiring');
        await expectGrpcCode(
          writeRequests(h.client, [{ resource_name: name, write_offset: 0, data: Buffer.from('abc') }]),
          grpc.status.NOT_FOUND,
          named(name),
        );
        await h.app.get<Storage>(STORAGE).deleteStaging(uploadId);
        await sessions.endExpiry(uploadId);
      });

      it('on a Write whose session vanishes under it', async () => {
        const name = randomName('vanishing');
        const uploadId = ByteStreamService.uploadId(name);
        const call = h.client.Write(bearer(), () => undefined);
        const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
        call.on('error', () => undefined);
        call.write({ resource_name: name, write_offset: 0, data: Buffer.from('abc') });
        const sessions = h.app.get(SessionStore);
        await waitFor('the writer to commit its 3 bytes', async () => (await sessions.get(uploadId))?.committed === 3);
        // its Redis key lapsed (the expiry job never takes a leased upload)
        await h.app.get<Redis>(REDIS).del(h.app.get(RedisKeys).upload(uploadId));
        call.write({ write_offset: 3, data: Buffer.from('def') });
        call.end();
        const { code, details } = await status;
        expect({ code, details }).toEqual({ code: grpc.status.NOT_FOUND, details: expect.stringMatching(named(name)) });
      });
    });

    it.each([
      ['a ".." segment', 'dir/../../etc/passwd', /"\.\."/],
      ['a NUL byte', 'bad\u0000name', /control character/],
      ['10 KB', 'n'.repeat(10 * 1024), /longer than 1024 bytes/],
    ])('refuses names with %s on every RPC, touching nothing', async (_label, name, message) => {
      const before = existsSync(join(h.data.path, 'staging')) ? readdirSync(join(h.data.path, 'staging')).length : 0;
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: name, write_offset: 0, data: Buffer.from('x'), finish_write: true }]),
        grpc.status.INVALID_ARGUMENT,
        message,
      );
      await expectGrpcCode(readBytes(h.client, name), grpc.status.INVALID_ARGUMENT, message);
      await expectGrpcCode(queryWriteStatus(h.client, name), grpc.status.INVALID_ARGUMENT, message);
      const after = existsSync(join(h.data.path, 'staging')) ? readdirSync(join(h.data.path, 'staging')).length : 0;
      expect(after).toBe(before);
    });

    it('gives a concurrent second writer ABORTED, never interleaving', async () => {
      const name = randomName('two-writers');
      const data = patternBytes(4 * MiB, 31);
      await writeRequests(h.client, [{ resource_name: name, write_offset: 0, data: data.subarray(0, MiB) }]);
      const first = h.client.Write(bearer(), () => undefined);
      first.on('error', () => undefined);
      first.write({ resource_name: name, write_offset: MiB, data: data.subarray(MiB, 2 * MiB) });
      // wait until the first writer holds the lease
      const sessions = h.app.get(SessionStore);
      const uploadId = ByteStreamService.uploadId(name);
      await waitFor('the first writer to commit its MiB', async () => (await sessions.get(uploadId))?.committed === 2 * MiB);
      expect(await h.leased(uploadId)).toBe(true);
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: name, write_offset: 2 * MiB, data: data.subarray(2 * MiB), finish_write: true }]),
        grpc.status.ABORTED,
      );
      const status = new Promise<grpc.StatusObject>((r) => first.on('status', r));
      first.write({ write_offset: 2 * MiB, data: data.subarray(2 * MiB), finish_write: true });
      first.end();
      expect((await status).code).toBe(grpc.status.OK);
      expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
    });
  });

  describe('immutability of generic names', () => {
    it('accepts identical content again and refuses different content with ALREADY_EXISTS', async () => {
      const name = randomName('immutable');
      const data = patternBytes(300_000, 41);
      await uploadBytes(h.client, name, data);
      expect(await uploadBytes(h.client, name, data)).toBe(data.length);
      const other = Buffer.from(data);
      other[5] ^= 0xff;
      await expectGrpcCode(uploadBytes(h.client, name, other), grpc.status.ALREADY_EXISTS);
      expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
      // a finish at offset == size is an idempotent success; data past the end is not
      expect(await writeRequests(h.client, [{ resource_name: name, write_offset: data.length, finish_write: true }])).toBe(data.length);
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: name, write_offset: data.length, data: Buffer.from('x') }]),
        grpc.status.OUT_OF_RANGE,
      );
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: name, write_offset: 7, data: Buffer.from('x') }]),
        grpc.status.INVALID_ARGUMENT,
        /is complete/,
      );
    });
  });

  describe('Remote Execution API names', () => {
    it('verifies, stores content-addressed, and reads back by digest', async () => {
      const data = patternBytes(3 * MiB + 5, 51);
      const sha = sha256Hex(data);
      const upload = `inst/uploads/${randomName('uuid')}/blobs/${sha}/${data.length}`;
      expect(await writeRequests(h.client, chunkedRequests(upload, data, { chunk: 16 * 1024 }))).toBe(data.length);
      expect(blobFiles()).toContain(sha);
      expectSameBytes((await readBytes(h.client, `inst/blobs/${sha}/${data.length}`)).data, data);
      expectSameBytes((await readBytes(h.client, `blobs/${sha}/${data.length}`)).data, data);
      expect(await h.app.get(Catalog).get(`blobs/${sha}/${data.length}`)).toMatchObject({ protocol: 'bytestream-cas', size: data.length });
      expect(await queryWriteStatus(h.client, upload)).toEqual({ committed_size: data.length, complete: true });
      await expectGrpcCode(readBytes(h.client, `blobs/${sha}/${data.length + 1}`), grpc.status.NOT_FOUND);
    });

    it('ends the Write at once with committed_size = size when the blob exists', async () => {
      const data = patternBytes(2 * MiB, 52);
      const sha = sha256Hex(data);
      await uploadBytes(h.client, `uploads/a/blobs/${sha}/${data.length}`, data);
      const again = writeRequests(h.client, [
        { resource_name: `uploads/b/blobs/${sha}/${data.length}`, write_offset: 0, data: data.subarray(0, 1000) },
      ]);
      expect(await again).toBe(data.length);
    });

    it('always has the empty blob', async () => {
      expect((await readBytes(h.client, `blobs/${EMPTY_SHA}/0`)).data.length).toBe(0);
      expect(
        await writeRequests(h.client, [{ resource_name: `uploads/e/blobs/${EMPTY_SHA}/0`, write_offset: 0, finish_write: true }]),
      ).toBe(0);
      expect(await queryWriteStatus(h.client, `uploads/e2/blobs/${EMPTY_SHA}/0`)).toEqual({ committed_size: 0, complete: true });
    });

    it('refuses a digest mismatch with INVALID_ARGUMENT and stores nothing', async () => {
      const data = patternBytes(1 * MiB, 53);
      const wrong = 'f'.repeat(64);
      const upload = `uploads/mm/blobs/${wrong}/${data.length}`;
      await expectGrpcCode(uploadBytes(h.client, upload, data), grpc.status.INVALID_ARGUMENT, /digest mismatch/);
      expect(blobFiles()).not.toContain(sha256Hex(data));
      expect(blobFiles()).not.toContain(wrong);
      expect(await queryWriteStatus(h.client, upload)).toEqual({ committed_size: 0, complete: false });
      expect(readdirSync(join(h.data.path, 'staging'))).not.toContain(ByteStreamService.uploadId(upload));
    });

    it('refuses a size mismatch (short and long) with INVALID_ARGUMENT and stores nothing', async () => {
      const data = patternBytes(10_000, 54);
      const sha = sha256Hex(data);
      await expectGrpcCode(
        uploadBytes(h.client, `uploads/s1/blobs/${sha}/${data.length + 1}`, data),
        grpc.status.INVALID_ARGUMENT,
        /size mismatch/,
      );
      await expectGrpcCode(
        uploadBytes(h.client, `uploads/s2/blobs/${sha}/${data.length - 1}`, data),
        grpc.status.INVALID_ARGUMENT,
        /size mismatch/,
      );
      // streamed in several messages, the excess is refused as soon as it arrives
      const streamed = chunkedRequests(`uploads/s3/blobs/${sha}/${data.length - 1}`, data, { chunk: 4096 });
      await expectGrpcCode(writeRequests(h.client, streamed), grpc.status.INVALID_ARGUMENT, /more data than/);
      expect(await queryWriteStatus(h.client, `uploads/s3/blobs/${sha}/${data.length - 1}`)).toEqual({
        committed_size: 0,
        complete: false,
      });
      expect(blobFiles()).not.toContain(sha);
    });

    it('answers {0, false} for unknown REAPI uploads and refuses writes to download names', async () => {
      expect(await queryWriteStatus(h.client, `uploads/x/blobs/${'d'.repeat(64)}/9`)).toEqual({ committed_size: 0, complete: false });
      await expectGrpcCode(
        writeRequests(h.client, [{ resource_name: `blobs/${'d'.repeat(64)}/1`, write_offset: 0, data: Buffer.from('x') }]),
        grpc.status.INVALID_ARGUMENT,
        /download name/,
      );
    });

    it('keys uploads by the whole name, so one uuid can carry different blobs', async () => {
      const a = patternBytes(40_000, 61);
      const b = patternBytes(50_000, 62);
      await Promise.all([
        writeRequests(h.client, chunkedRequests(`uploads/same/blobs/${sha256Hex(a)}/${a.length}`, a, { chunk: 16 * 1024 })),
        writeRequests(h.client, chunkedRequests(`uploads/same/blobs/${sha256Hex(b)}/${b.length}`, b, { chunk: 16 * 1024 })),
      ]);
      expectSameBytes((await readBytes(h.client, `blobs/${sha256Hex(b)}/${b.length}`)).data, b);
    });
  });

  describe('auth', () => {
    it('refuses calls without or with bad credentials', async () => {
      await expectGrpcCode(
        uploadBytes(h.client, 'x', Buffer.from('a'), new grpc.Metadata()),
        grpc.status.UNAUTHENTICATED,
        /missing credentials/,
      );
      await expectGrpcCode(
        readBytes(h.client, 'x', { metadata: bearer('wrong-token') }),
        grpc.status.UNAUTHENTICATED,
        /invalid credentials/,
      );
      await expectGrpcCode(queryWriteStatus(h.client, 'x', bearer('wrong-token')), grpc.status.UNAUTHENTICATED);
    });
  });
});

describe('ByteStream scopes', () => {
  let h: IngestHarness;

  beforeAll(async () => {
    h = await startIngest({
      FERRY_CLIENTS: JSON.stringify([
        { clientId: 'reader', accessToken: 'reader-token', scopes: ['ferry:read:*'] },
        { clientId: 'writer', accessToken: 'writer-token', scopes: ['ferry:write:team/*', 'ferry:read:team/*'] },
        { clientId: 'multipart', accessToken: 'multipart-token', scopes: ['ferry:write:fileHandle/*', 'ferry:read:*'] },
      ]),
    });
  });

  afterAll(async () => {
    await h.close();
  });

  it('enforces ferry:write:<name> and ferry:read:<name>', async () => {
    expect(await uploadBytes(h.client, 'team/a', Buffer.from('hi'), bearer('writer-token'))).toBe(2);
    await expectGrpcCode(
      uploadBytes(h.client, 'other/a', Buffer.from('hi'), bearer('writer-token')),
      grpc.status.PERMISSION_DENIED,
      /ferry:write:other\/a/,
    );
    await expectGrpcCode(uploadBytes(h.client, 'team/b', Buffer.from('hi'), bearer('reader-token')), grpc.status.PERMISSION_DENIED);
    expect((await readBytes(h.client, 'team/a', { metadata: bearer('reader-token') })).data.toString()).toBe('hi');
    await expectGrpcCode(readBytes(h.client, 'dev-only', { metadata: bearer('dev-secret') }), grpc.status.UNAUTHENTICATED);
  });

  it('keeps fileHandle/ names for multipart file handles, whatever the scopes', async () => {
    // a multipart client may write fileHandle/* (its uploads become handles), but only through the
    // multipart API: over ByteStream it could take the name the next handle will need
    await expectGrpcCode(
      uploadBytes(h.client, 'fileHandle/1', Buffer.from('squat'), bearer('multipart-token')),
      grpc.status.PERMISSION_DENIED,
      /multipart file handles/,
    );
    await expectGrpcCode(readBytes(h.client, 'fileHandle/1', { metadata: bearer('multipart-token') }), grpc.status.NOT_FOUND);
  });
});

describe('ByteStream Write from a client that stalls', () => {
  let h: IngestHarness;

  beforeAll(async () => {
    h = await startIngest({ FERRY_GRPC_STREAM_IDLE_MS: '400' });
  });

  afterAll(async () => {
    await h.close();
  });

  it('is ended with DEADLINE_EXCEEDED after FERRY_GRPC_STREAM_IDLE_MS without a message; what it sent stays and another writer continues', async () => {
    const name = randomName('stalled');
    const data = patternBytes(3 * MiB, 11);
    const started = Date.now();
    const ended = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = h.client.Write(bearer(), (err) => resolve(err));
      call.write({ resource_name: name, write_offset: 0, data: data.subarray(0, MiB), finish_write: false });
      // ...and nothing more, the call left open
    });
    const err = await ended;
    expect({ code: err?.code, details: err?.details }).toEqual({
      code: grpc.status.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/sent nothing for 400 ms/),
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    // the stream's writer committed what it received and let go: no lease to wait out
    expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: MiB, complete: false });
    expect(await writeRequests(h.client, chunkedRequests(name, data, { offset: MiB }))).toBe(data.length);
    expect(sha256Hex((await readBytes(h.client, name)).data)).toBe(sha256Hex(data));
  });
});
