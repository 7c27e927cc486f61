import { request as httpRequest } from 'node:http';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UrlSigner } from '@ferry/auth';
import { Catalog } from '@ferry/catalog';
import { Queue } from 'bullmq';
import { REDIS } from '@ferry/core';
import { QUEUES, assemblyJobId } from '@ferry/jobs';
import { type Redis, RedisKeys, createRedis } from '@ferry/redis';
import { FileHandles, MultipartStore, type MultipartUploadRequest, requestDigest } from '@ferry/multipart';
import { MultipartClient, allKeys, eventually, md5Hex, patternBytes, sha256Hex, waitFor } from '@ferry/testing';
import { MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const MiB = 1024 * 1024;
const PART = 5 * MiB;

type Status = {
  uploadId: string;
  state: string;
  partsState: string;
  startedBy: string;
  resultFileHandleId?: string;
  errorMessage?: string;
};
type Urls = { partPresignedUrls: { partNumber: number; uploadPresignedUrl: string; signedHeaders: Record<string, string> }[] };

function startRequest(content: Buffer, fileName: string, extra: Record<string, unknown> = {}) {
  return {
    fileName,
    contentType: 'application/octet-stream',
    contentMD5Hex: md5Hex(content),
    fileSizeBytes: content.length,
    partSizeBytes: PART,
    ...extra,
  };
}

function part(content: Buffer, n: number): Buffer {
  return content.subarray((n - 1) * PART, n * PART);
}

describe('multipart-api (real HTTP, Redis, disk and assembly worker)', () => {
  let h: MultipartHarness;
  let alice: MultipartClient;
  let bob: MultipartClient;
  const file = patternBytes(2 * PART + 1234, 7); // three parts: 5 MiB, 5 MiB, 1234 bytes

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_MULTIPART_COMPLETE_WAIT_MS: '10000' });
    alice = h.client('alice-token');
    bob = h.client('bob-token-1');
  });

  afterAll(async () => {
    await h.close(); // waits for assemblies still running
  });

  async function started(client: MultipartClient, content: Buffer, name: string, extra: Record<string, unknown> = {}): Promise<Status> {
    const r = await client.start(startRequest(content, name, extra));
    expect(r.status).toBe(201);
    return r.body as unknown as Status;
  }

  async function urls(client: MultipartClient, uploadId: string, parts: number[], extra: Record<string, unknown> = {}): Promise<Urls> {
    const r = await client.urls(uploadId, parts, extra);
    expect(r.status).toBe(201);
    return r.body;
  }

  /**
   * Completes the upload as clients do: again while it answers 202 (the assembly outlasted
   * FERRY_MULTIPART_COMPLETE_WAIT_MS, as it may on a busy machine). The final answer.
   */
  async function completed(client: MultipartClient, uploadId: string) {
    let r = await client.complete(uploadId);
    await waitFor(
      `the assembly of ${uploadId} to settle`,
      async () => r.status !== 202 || (r = await client.complete(uploadId)).status !== 202,
    );
    return r;
  }

  async function putAndAdd(client: MultipartClient, uploadId: string, content: Buffer, n: number): Promise<void> {
    const [u] = (await urls(client, uploadId, [n])).partPresignedUrls;
    expect((await MultipartClient.put(u.uploadPresignedUrl, part(content, n))).status).toBe(200);
    expect((await client.add(uploadId, n, md5Hex(part(content, n)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
  }

  it('uploads a file in parts, completes it, and serves the file handle, its URL and its bytes (with ranges)', async () => {
    const s = await started(alice, file, 'data.bin');
    expect(s).toMatchObject({ state: 'UPLOADING', partsState: '000', startedBy: 'alice' });
    expect(s.uploadId).toMatch(/^mp_/);
    const batch = await urls(alice, s.uploadId, [3, 1, 2]);
    expect(batch.partPresignedUrls.map((u) => u.partNumber)).toEqual([3, 1, 2]);
    // parts in any order, in parallel
    const puts = await Promise.all(batch.partPresignedUrls.map((u) => MultipartClient.put(u.uploadPresignedUrl, part(file, u.partNumber))));
    expect(puts.map((p) => p.status)).toEqual([200, 200, 200]);
    expect(puts[0].headers.get('etag')).toBe(`"${md5Hex(part(file, 3))}"`);
    for (const n of [2, 3, 1])
      expect((await alice.add(s.uploadId, n, md5Hex(part(file, n)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    expect((await alice.status(s.uploadId)).body).toMatchObject({ partsState: '111', state: 'UPLOADING' });

    const done = await completed(alice, s.uploadId);
    expect(done.status).toBe(200);
    const status = done.body as unknown as Status;
    expect(status).toMatchObject({ state: 'COMPLETED', partsState: '111' });
    expect(status.resultFileHandleId).toMatch(/^\d+$/);
    // completing again returns the same result
    expect((await alice.complete(s.uploadId)).body).toMatchObject({ state: 'COMPLETED', resultFileHandleId: status.resultFileHandleId });
    // a completed upload takes no more parts: no URLs for them
    const late = await alice.urls(s.uploadId, [1]);
    expect([late.status, late.body]).toEqual([409, expect.objectContaining({ message: expect.stringMatching(/is COMPLETED/) })]);

    const handle = await alice.request('GET', `/file/fileHandle/${status.resultFileHandleId}`);
    expect(handle.status).toBe(200);
    expect(handle.body).toMatchObject({
      id: status.resultFileHandleId,
      fileName: 'data.bin',
      contentMd5: md5Hex(file),
      contentSize: file.length,
      createdBy: 'alice',
      contentSha256: sha256Hex(file),
      objectName: `fileHandle/${status.resultFileHandleId}`,
    });
    const object = await h.app.get(Catalog).get(`fileHandle/${status.resultFileHandleId}`);
    expect(object).toMatchObject({ sha256: sha256Hex(file), size: file.length, protocol: 'multipart', owner: 'alice' });

    const redirect = await alice.request('GET', `/file/fileHandle/${status.resultFileHandleId}/url`);
    expect(redirect.status).toBe(307);
    const location = redirect.headers.get('location') ?? '';
    const plain = await alice.request('GET', `/file/fileHandle/${status.resultFileHandleId}/url?redirect=false`);
    expect(plain.status).toBe(200);
    expect(String(plain.body)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/file\/fileHandle\/\d+\/content\?X-Ferry-Expires=/);
    const whole = await fetch(location);
    expect(whole.status).toBe(200);
    expect(sha256Hex(Buffer.from(await whole.arrayBuffer()))).toBe(sha256Hex(file));
    expect(whole.headers.get('content-md5')).toBe(Buffer.from(md5Hex(file), 'hex').toString('base64'));
    const ranged = await fetch(location, { headers: { range: `bytes=${PART - 2}-${PART + 1}` } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes ${PART - 2}-${PART + 1}/${file.length}`);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(file.subarray(PART - 2, PART + 2))).toBe(true);
    const unsatisfiable = await fetch(location, { headers: { range: `bytes=${file.length}-` } });
    expect(unsatisfiable.status).toBe(416);
    // the download URL is signed: tampering is refused
    const forged = await fetch(location.replace(/\/fileHandle\/\d+\//, '/fileHandle/999/'));
    expect(forged.status).toBe(403);
    // staging is gone, the blob is in place
    expect(readdirSync(join(h.data.path, 'staging'))).toEqual([]);
    expect(await h.storage.blobSize(sha256Hex(file))).toBe(file.length);
  });

  it('is idempotent per user and request: the same start resumes the same upload with its missing parts', async () => {
    const content = patternBytes(PART + 10, 11);
    const s = await started(alice, content, 'resume.bin');
    await putAndAdd(alice, s.uploadId, content, 2);
    const again = await started(alice, content, 'resume.bin');
    expect(again).toMatchObject({ uploadId: s.uploadId, partsState: '01', state: 'UPLOADING' });
    const renamed = await started(alice, content, 'other-name.bin');
    expect(renamed.uploadId).not.toBe(s.uploadId);
    const bobs = await started(bob, content, 'resume.bin');
    expect(bobs.uploadId).not.toBe(s.uploadId);
  });

  it('gives concurrent identical starts one upload', async () => {
    const content = patternBytes(PART + 10, 21);
    const all = await Promise.all(Array.from({ length: 10 }, () => alice.start(startRequest(content, 'race.bin'))));
    expect(all.map((r) => r.status)).toEqual(Array(10).fill(201));
    expect(new Set(all.map((r) => (r.body as unknown as Status).uploadId)).size).toBe(1);
  });

  it('forceRestart abandons the previous upload and its staged parts', async () => {
    const content = patternBytes(PART + 10, 12);
    const s = await started(alice, content, 'restart.bin');
    await putAndAdd(alice, s.uploadId, content, 1);
    const fresh = await alice.start(startRequest(content, 'restart.bin'), true);
    expect(fresh.status).toBe(201);
    const f = fresh.body as unknown as Status;
    expect(f.uploadId).not.toBe(s.uploadId);
    expect(f.partsState).toBe('00');
    expect((await alice.status(s.uploadId)).status).toBe(404);
    expect(await h.storage.stagingSize(s.uploadId)).toBeUndefined();
    expect((await alice.start(startRequest(content, 'restart.bin'), 'maybe' as unknown as boolean)).status).toBe(400);
  });

  it('refuses a part whose MD5 differs, then accepts the right bytes; a part PUT again replaces the previous bytes', async () => {
    const content = patternBytes(PART + 100, 13);
    const s = await started(alice, content, 'md5.bin');
    expect((await alice.add(s.uploadId, 1, md5Hex(part(content, 1)))).body).toMatchObject({
      addPartState: 'ADD_FAILED',
      errorMessage: expect.stringMatching(/no bytes are stored for part 1/),
    });
    const [u] = (await urls(alice, s.uploadId, [1])).partPresignedUrls;
    const corrupted = Buffer.from(part(content, 1));
    corrupted[12345] ^= 0xff;
    expect((await MultipartClient.put(u.uploadPresignedUrl, corrupted)).status).toBe(200);
    const refused = await alice.add(s.uploadId, 1, md5Hex(part(content, 1)));
    expect(refused.body).toMatchObject({ addPartState: 'ADD_FAILED', errorMessage: expect.stringContaining(md5Hex(corrupted)) });
    expect((await alice.status(s.uploadId)).body).toMatchObject({ partsState: '00' });
    // the same URL again, with the right bytes, replaces them
    expect((await MultipartClient.put(u.uploadPresignedUrl, part(content, 1))).status).toBe(200);
    expect((await alice.add(s.uploadId, 1, md5Hex(part(content, 1)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    // a new PUT of an added part makes it missing again until it is added again
    expect((await MultipartClient.put(u.uploadPresignedUrl, corrupted)).status).toBe(200);
    expect((await alice.status(s.uploadId)).body).toMatchObject({ partsState: '00' });
    expect((await alice.add(s.uploadId, 1, 'zz')).status).toBe(400);
    expect((await alice.add(s.uploadId, 3, md5Hex(corrupted))).status).toBe(400);
  });

  it('refuses to complete with parts missing, naming them, and changes nothing', async () => {
    const content = patternBytes(2 * PART + 1, 14);
    const s = await started(alice, content, 'missing.bin');
    await putAndAdd(alice, s.uploadId, content, 2);
    const r = await alice.complete(s.uploadId);
    expect(r.status).toBe(400);
    expect(r.body).toEqual({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/2 part\(s\) missing: 1, 3/),
      reason: expect.any(String),
    });
    expect((await alice.status(s.uploadId)).body).toMatchObject({ state: 'UPLOADING', partsState: '010' });
  });

  it('fails the upload when the assembled file does not have contentMD5Hex: no handle, nothing published', async () => {
    const content = patternBytes(PART + 7, 15);
    const wrong = md5Hex('something else');
    const s = await started(alice, content, 'wrong-md5.bin', { contentMD5Hex: wrong });
    await putAndAdd(alice, s.uploadId, content, 1);
    await putAndAdd(alice, s.uploadId, content, 2);
    const r = await completed(alice, s.uploadId);
    expect(r.status).toBe(400);
    expect((r.body as { message: string }).message).toMatch(
      new RegExp(`MD5 of the assembled file is ${md5Hex(content)}, but contentMD5Hex is ${wrong}`),
    );
    const status = (await alice.status(s.uploadId)).body as unknown as Status;
    expect(status.state).toBe('FAILED');
    expect(status.resultFileHandleId).toBeUndefined();
    expect(await h.storage.blobSize(sha256Hex(content))).toBeUndefined();
    // the worker deletes the staged parts right after it marks the upload FAILED (what complete waits for)
    await eventually(async () => expect(await h.storage.stagingSize(s.uploadId)).toBeUndefined());
    // starting it again starts afresh
    const again = await started(alice, content, 'wrong-md5.bin', { contentMD5Hex: wrong });
    expect(again.uploadId).not.toBe(s.uploadId);
    expect(again.state).toBe('UPLOADING');
  });

  it('completes at once in multipart-api, with no worker, the digests having followed the parts as they landed', async () => {
    const store = h.app.get(MultipartStore);
    const producer = createRedis(h.config.redis.url, 'producer');
    const queue = new Queue(QUEUES.assembly, { connection: producer, prefix: h.app.get(RedisKeys).bullPrefix() });
    await h.stopWorker();
    try {
      // every part hashed before complete (in the background, after each add's answer): nothing left
      const content = patternBytes(3 * PART + 99, 60);
      const s = await started(alice, content, 'at-once.bin');
      for (const n of [2, 4, 1, 3]) await putAndAdd(alice, s.uploadId, content, n);
      await waitFor('the digests to cover every part', async () => (await store.get(s.uploadId))?.digest.parts === 4);
      const done = await alice.complete(s.uploadId);
      expect([done.status, done.body]).toEqual([
        200,
        expect.objectContaining({ state: 'COMPLETED', resultFileHandleId: expect.any(String) }),
      ]);
      const handle = (await alice.request('GET', `/file/fileHandle/${(done.body as Status).resultFileHandleId}`)).body;
      expect(handle).toMatchObject({ contentMd5: md5Hex(content), contentSha256: sha256Hex(content), contentSize: content.length });
      expect(await h.storage.blobSize(sha256Hex(content))).toBe(content.length);
      expect(await h.storage.stagingSize(s.uploadId)).toBeUndefined();
      // the job enqueued in case multipart-api died meanwhile was dropped once the upload settled
      expect(await queue.getJob(assemblyJobId(s.uploadId))).toBeUndefined();

      // complete right after the last add: complete hashes what is left itself
      const other = patternBytes(2 * PART + 5, 61);
      const t = await started(alice, other, 'at-once-2.bin');
      for (const n of [1, 2, 3]) await putAndAdd(alice, t.uploadId, other, n);
      const quick = await alice.complete(t.uploadId);
      expect([quick.status, quick.body]).toEqual([200, expect.objectContaining({ state: 'COMPLETED' })]);
      expect(await h.storage.blobSize(sha256Hex(other))).toBe(other.length);
      // counted here, not by a worker
      const metrics = await (await fetch(`${h.base}/metrics`)).text();
      expect(metrics).toMatch(/^ferry_assemblies_total\{outcome="COMPLETED"\} [1-9]\d*$/m);
      expect(Number(/^ferry_multipart_digest_bytes_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(content.length);
    } finally {
      await queue.close();
      await producer.quit();
      await h.startWorker();
    }
  });

  it('answers a file the user already uploaded at once, under a new name, with a new handle sharing the content; never across users', async () => {
    const content = patternBytes(PART + 99, 16);
    const first = await alice.upload(content, { fileName: 'foo', partSizeBytes: PART });
    const firstHandle = (first.body as Status).resultFileHandleId;
    expect(firstHandle).toBeDefined();
    // at once: answered by the start itself, with no assembly (no worker runs meanwhile; an
    // assembly waited for would leave the start ASSEMBLING after FERRY_MULTIPART_COMPLETE_WAIT_MS)
    await h.stopWorker();
    let again: Status;
    try {
      again = await started(alice, content, 'foo2');
    } finally {
      await h.startWorker();
    }
    expect(again.state).toBe('COMPLETED');
    expect(again.partsState).toBe('11');
    expect(again.resultFileHandleId).toBeDefined();
    expect(again.resultFileHandleId).not.toBe(firstHandle);
    const handle = (await alice.request('GET', `/file/fileHandle/${again.resultFileHandleId}`)).body;
    expect(handle).toMatchObject({ fileName: 'foo2', contentMd5: md5Hex(content), contentSize: content.length, createdBy: 'alice' });
    // the same start again: the same upload, the same handle
    expect(await started(alice, content, 'foo2')).toMatchObject({ uploadId: again.uploadId, resultFileHandleId: again.resultFileHandleId });
    // forceRestart skips dedup
    expect((await alice.start(startRequest(content, 'foo3'), true)).body).toMatchObject({ state: 'UPLOADING' });
    // another user with the same content uploads it themselves
    expect(await started(bob, content, 'foo')).toMatchObject({ state: 'UPLOADING', partsState: '00' });
    // and cannot read alice's handles
    expect((await bob.request('GET', `/file/fileHandle/${firstHandle}`)).status).toBe(403);
    expect((await bob.request('GET', `/file/fileHandle/${firstHandle}/url`)).status).toBe(403);
    expect((await alice.request('GET', '/file/fileHandle/987654')).status).toBe(404);
  });

  it('finishes a dedup whose start died half-way with the handle it had made, not a second one', async () => {
    const content = patternBytes(PART + 5, 17);
    const first = (await alice.upload(content, { fileName: 'orig', partSizeBytes: PART })).body as Status;
    const original = await h.app.get(Catalog).get(`fileHandle/${first.resultFileHandleId}`);
    // what a start did before its process was killed: the upload, its request entry, the dedup's
    // handle id recorded and the handle made, but the upload not yet marked COMPLETED
    const store = h.app.get(MultipartStore);
    const request: MultipartUploadRequest = startRequest(content, 'copy');
    const id = MultipartStore.newUploadId();
    await store.create(id, 'alice', requestDigest(request), request);
    expect((await store.swapRequest('alice', requestDigest(request), '', id)).ok).toBe(true);
    const handleId = (await store.claimDedupHandle(id, await h.app.get(FileHandles).allocateId())) as string;
    const { size, sha256, md5 } = original as NonNullable<typeof original>;
    await h.app
      .get(FileHandles)
      .create(
        handleId,
        { fileName: 'copy', contentType: 'application/octet-stream', owner: 'alice' },
        { size, sha256, md5: md5 as string },
      );
    // the client starts again: that handle, now complete
    expect((await alice.start({ ...request })).body).toMatchObject({ uploadId: id, state: 'COMPLETED', resultFileHandleId: handleId });
  });

  it('dedups a start repeated after one that died before its dedup began', async () => {
    const content = patternBytes(PART + 9, 19);
    const first = (await alice.upload(content, { fileName: 'orig3', partSizeBytes: PART })).body as Status;
    // what a start did before its process was killed: the upload, made the request's, nothing more
    const store = h.app.get(MultipartStore);
    const request: MultipartUploadRequest = startRequest(content, 'copy3');
    const id = MultipartStore.newUploadId();
    await store.create(id, 'alice', requestDigest(request), request);
    expect((await store.swapRequest('alice', requestDigest(request), '', id)).ok).toBe(true);
    // the client starts again: the same upload, completed as a copy, as the first start would have
    const again = (await alice.start({ ...request })).body as Status;
    expect(again).toMatchObject({ uploadId: id, state: 'COMPLETED', partsState: '11' });
    expect(again.resultFileHandleId).not.toBe(first.resultFileHandleId);
    expect((await alice.request('GET', `/file/fileHandle/${again.resultFileHandleId}`)).body).toMatchObject({
      fileName: 'copy3',
      contentMd5: md5Hex(content),
    });
  });

  it('removes the handle of a dedup whose start died half-way when the client restarts instead', async () => {
    const content = patternBytes(PART + 7, 18);
    const first = (await alice.upload(content, { fileName: 'orig2', partSizeBytes: PART })).body as Status;
    const original = (await h.app.get(Catalog).get(`fileHandle/${first.resultFileHandleId}`)) as NonNullable<
      Awaited<ReturnType<Catalog['get']>>
    >;
    const store = h.app.get(MultipartStore);
    const handles = h.app.get(FileHandles);
    /** What a start did before its process was killed: its upload, the dedup's handle made, not yet given out. */
    const interruptedStart = async (fileName: string) => {
      const request: MultipartUploadRequest = startRequest(content, fileName);
      const id = MultipartStore.newUploadId();
      await store.create(id, 'alice', requestDigest(request), request);
      expect((await store.swapRequest('alice', requestDigest(request), '', id)).ok).toBe(true);
      const handleId = (await store.claimDedupHandle(id, await handles.allocateId())) as string;
      await handles.create(
        handleId,
        { fileName, contentType: 'application/octet-stream', owner: 'alice' },
        { size: original.size, sha256: original.sha256, md5: original.md5 as string },
      );
      return { id, request, handleId };
    };
    // the client starts again with forceRestart: the upload is abandoned, and the handle no one got with it
    const restarted = await interruptedStart('restarted');
    expect((await alice.start({ ...restarted.request }, true)).body).toMatchObject({ state: 'UPLOADING' });
    expect(await handles.get(restarted.handleId)).toBeUndefined();
    expect(await h.app.get(Catalog).get(`fileHandle/${restarted.handleId}`)).toBeUndefined();
    // (the client that never comes back: the worker's expiry removes it, see apps/assembler-worker)
    // the original is untouched
    expect((await alice.request('GET', `/file/fileHandle/${first.resultFileHandleId}`)).status).toBe(200);
  });

  it('refuses malformed start requests with a reason, creating nothing', async () => {
    const ok = startRequest(file, 'x.bin');
    const cases: [Record<string, unknown> | string, RegExp][] = [
      [{ ...ok, partSizeBytes: 1024 }, /partSizeBytes: at least 5242880/],
      [{ ...ok, partSizeBytes: 6 * 1024 ** 3 }, /partSizeBytes: at most/],
      [{ ...ok, fileSizeBytes: 10_001 * PART }, /more than 10000/],
      [{ ...ok, fileSizeBytes: 0 }, /fileSizeBytes: must be at least 1/],
      [{ ...ok, fileSizeBytes: 1.5 }, /fileSizeBytes: must be an integer/],
      [{ ...ok, contentMD5Hex: 'abc' }, /contentMD5Hex: must be 32 hexadecimal digits/],
      [{ ...ok, fileName: '' }, /fileName/],
      [{ ...ok, fileName: 'a/b' }, /fileName: must not contain/],
      [{ ...ok, unexpected: 1 }, /Unrecognized key/],
      [{ ...ok, contentType: 'text/plain; charset=é' }, /contentType: must be printable ASCII/],
      [{ ...ok, fileSizeBytes: undefined }, /fileSizeBytes/],
      ['[1,2]', /JSON object/],
      ['{not json', /not valid JSON/],
    ];
    const redis = h.app.get<Redis>(REDIS);
    const state = async () => (await allKeys(redis)).filter((k) => !k.includes(':bull}')).sort();
    const keysBefore = await state();
    for (const [body, reason] of cases) {
      const r = await alice.request('POST', '/file/multipart', body);
      expect([r.status, (r.body as { reason: string }).reason]).toEqual([400, expect.stringMatching(reason)]);
    }
    expect(await state()).toEqual(keysBefore);
    // a file smaller than one part may use a smaller part size
    expect((await alice.start({ ...ok, fileSizeBytes: 100, partSizeBytes: 100 })).status).toBe(201);
    expect((await alice.request<string>('POST', '/file/multipart', 'x', { 'content-type': 'text/plain' })).status).toBe(400);
  });

  it('authenticates every control route and lets only the starter use an upload', async () => {
    const s = await started(alice, file, 'mine.bin');
    const anonymous = h.client('');
    const forged = h.client('not-a-token');
    for (const c of [anonymous, forged]) {
      expect((await c.start(startRequest(file, 'x'))).status).toBe(401);
      expect((await c.status(s.uploadId)).status).toBe(401);
    }
    const unauth = await anonymous.status(s.uploadId);
    expect(unauth.body).toEqual({ code: 'UNAUTHENTICATED', message: expect.any(String), reason: expect.any(String) });
    expect((await h.client('carol-token').start(startRequest(file, 'x'))).status).toBe(403);
    expect((await bob.status(s.uploadId)).status).toBe(403);
    expect((await bob.urls(s.uploadId, [1])).status).toBe(403);
    expect((await bob.add(s.uploadId, 1, md5Hex('x'))).status).toBe(403);
    expect((await bob.complete(s.uploadId)).status).toBe(403);
    expect((await alice.status('mp_doesnotexist')).status).toBe(404);
    expect((await alice.status('../../etc')).status).toBe(404);
  });

  it('validates presigned URL batches', async () => {
    const s = await started(alice, file, 'batch.bin');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ partNumbers: [4] }, /part 4 does not exist: this upload has 3 parts/],
      [{ partNumbers: [0] }, /part numbers start at 1/],
      [{ partNumbers: [] }, /at least one part/],
      [{ uploadId: 'mp_other', partNumbers: [1] }, /does not match/],
      [{ partNumbers: [1], extra: true }, /Unrecognized key/],
    ];
    for (const [body, reason] of cases) {
      const r = await alice.request('POST', `/file/multipart/${s.uploadId}/presigned/url/batch`, body);
      expect([r.status, (r.body as { reason: string }).reason]).toEqual([400, expect.stringMatching(reason)]);
    }
    const big = await startMultipartApi({ FERRY_MULTIPART_MAX_URL_BATCH: '2' }, false);
    try {
      const c = big.client('alice-token');
      const t = (await c.start(startRequest(file, 'b'))).body as unknown as Status;
      expect((await c.urls(t.uploadId, [1, 2, 3])).body).toMatchObject({ reason: expect.stringMatching(/at most 2 part numbers/) });
      // the Synapse documentation's spelling of the route works too
      expect((await c.request('POST', `/file/multipart/${t.uploadId}/presignedurl/batch`, { partNumbers: [1] })).status).toBe(201);
    } finally {
      await big.close();
    }
  }); // starts a second app with its own Redis (a six-node cluster in the cluster run)

  it('refuses tampered, expired and header-violating part URLs with 403, and wrong lengths with 400', async () => {
    const content = patternBytes(PART + 10, 17);
    const s = await started(alice, content, 'signed.bin');
    const [u] = (await urls(alice, s.uploadId, [1], { contentType: 'application/x-part' })).partPresignedUrls;
    expect(u.signedHeaders).toEqual({ 'Content-Type': 'application/x-part' });
    const p1 = part(content, 1);
    const expect403 = async (url: string, headers: Record<string, string>, reason: RegExp) => {
      const r = await MultipartClient.put(url, p1, headers);
      expect([r.status, (r.body as { reason: string }).reason]).toEqual([403, expect.stringMatching(reason)]);
    };
    /** The URL with `edit` made, which must change it. */
    const tampered = (edit: (url: string) => string) => {
      const url = edit(u.uploadPresignedUrl);
      expect(url).not.toBe(u.uploadPresignedUrl);
      return url;
    };
    await expect403(
      tampered((url) => url.replace('/parts/1?', '/parts/2?')),
      u.signedHeaders,
      /signature does not match/,
    );
    await expect403(
      tampered((url) => url.replace(/X-Ferry-Expires=\d+/, 'X-Ferry-Expires=9999999999')),
      u.signedHeaders,
      /signature does not match/,
    );
    // the first character of the signature changed (setting it to 'A' left one signature in 64 as it was)
    await expect403(
      tampered((url) => url.replace(/(X-Ferry-Signature=)(.)/, (_, name: string, c: string) => `${name}${c === 'A' ? 'B' : 'A'}`)),
      u.signedHeaders,
      /signature does not match/,
    );
    await expect403(u.uploadPresignedUrl, { 'Content-Type': 'text/plain' }, /signature does not match/);
    await expect403(u.uploadPresignedUrl.split('?')[0], u.signedHeaders, /not a signed URL/);
    const path = new URL(u.uploadPresignedUrl).pathname;
    const expired = new UrlSigner(h.config.signingKey ?? '').sign({ method: 'PUT', path, expiresAt: Math.floor(Date.now() / 1000) - 1 });
    await expect403(`${h.base}${path}?${expired}`, {}, /expired at/);
    // nothing was stored by the refused PUTs
    expect(await h.storage.stagingSize(s.uploadId)).toBeUndefined();

    const short = await MultipartClient.put(u.uploadPresignedUrl, p1.subarray(1), u.signedHeaders);
    expect([short.status, (short.body as { reason: string }).reason]).toEqual([
      400,
      expect.stringMatching(/exactly 5242880 bytes; Content-Length says 5242879/),
    ]);
    const chunkedTooLong = await putChunked(u.uploadPresignedUrl, [p1, Buffer.from('extra')], u.signedHeaders);
    expect(chunkedTooLong.status === 400 || chunkedTooLong.status === 0).toBe(true);
    expect((await alice.add(s.uploadId, 1, md5Hex(p1))).body).toMatchObject({ addPartState: 'ADD_FAILED' });
    // a JSON content type is still streamed as bytes
    const [j] = (await urls(alice, s.uploadId, [2], { contentType: 'application/json' })).partPresignedUrls;
    expect((await MultipartClient.put(j.uploadPresignedUrl, part(content, 2), j.signedHeaders)).status).toBe(200);
    expect((await alice.add(s.uploadId, 2, md5Hex(part(content, 2)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
  });

  it('refuses a second concurrent PUT of the same part with 409, and parts of an upload that is completing', async () => {
    const content = patternBytes(PART + 10, 18);
    const s = await started(alice, content, 'concurrent.bin');
    const [u] = (await urls(alice, s.uploadId, [1])).partPresignedUrls;
    const slow = slowPut(u.uploadPresignedUrl, part(content, 1));
    await slow.firstBytesSent;
    await waitFor('the server to take the lease of the slow PUT of part 1', () => h.partLeaseHeld(s.uploadId, 1));
    const second = await MultipartClient.put(u.uploadPresignedUrl, part(content, 1));
    expect([second.status, (second.body as { code: string }).code]).toEqual([409, 'ABORTED']);
    expect((await alice.add(s.uploadId, 1, md5Hex(part(content, 1)))).body).toMatchObject({
      errorMessage: expect.stringMatching(/in progress/),
    });
    slow.release();
    expect(await slow.status).toBe(200);
    expect((await alice.add(s.uploadId, 1, md5Hex(part(content, 1)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    await putAndAdd(alice, s.uploadId, content, 2);
    expect((await completed(alice, s.uploadId)).status).toBe(200);
    const late = await MultipartClient.put(u.uploadPresignedUrl, part(content, 1));
    expect([late.status, (late.body as { code: string }).code]).toEqual([409, 'FAILED_PRECONDITION']);
  });

  it('a client that disconnects mid-part leaves the part missing and PUTable again', async () => {
    const content = patternBytes(PART + 10, 19);
    const s = await started(alice, content, 'disconnect.bin');
    const [u] = (await urls(alice, s.uploadId, [1])).partPresignedUrls;
    const slow = slowPut(u.uploadPresignedUrl, part(content, 1));
    await slow.firstBytesSent;
    // mid-part: the server is receiving it (holds its lease)
    await waitFor('the server to take the lease of the slow PUT of part 1', () => h.partLeaseHeld(s.uploadId, 1));
    slow.abort();
    await slow.status.catch(() => undefined);
    // the lease is released by the server when it sees the request end
    await waitFor('the server to release the lease of the aborted PUT', async () => !(await h.partLeaseHeld(s.uploadId, 1)));
    expect((await MultipartClient.put(u.uploadPresignedUrl, part(content, 1))).status).toBe(200);
    expect((await alice.status(s.uploadId)).body).toMatchObject({ partsState: '00' });
  });

  it('answers complete with 202 while the assembly is still queued, and with the result when called again', async () => {
    await h.stopWorker();
    try {
      // more left to hash than multipart-api takes on itself (here: anything): the worker's job assembles
      const quick = await startMultipartApi({ FERRY_MULTIPART_COMPLETE_WAIT_MS: '300', FERRY_MULTIPART_INLINE_COMPLETE_BYTES: '0' }, false);
      try {
        const c = quick.client('alice-token');
        const content = patternBytes(1000, 20);
        const s = (await c.start({ ...startRequest(content, 'slow.bin'), partSizeBytes: 1000 })).body as unknown as Status;
        const [u] = (await c.urls(s.uploadId, [1])).body.partPresignedUrls;
        expect((await MultipartClient.put(u.uploadPresignedUrl, content)).status).toBe(200);
        await c.add(s.uploadId, 1, md5Hex(content));
        const pending = await c.complete(s.uploadId);
        expect(pending.status).toBe(202);
        expect(pending.headers.get('retry-after')).toBe('5');
        expect(pending.body).toMatchObject({ state: 'ASSEMBLING', partsState: '1' });
        expect((await c.start({ ...startRequest(content, 'slow.bin'), partSizeBytes: 1000 })).body).toMatchObject({
          uploadId: s.uploadId,
          state: 'ASSEMBLING',
        });
        // complete was called: its parts no longer change, even re-added with the same MD5
        const whileAssembling = await c.add(s.uploadId, 1, md5Hex(content));
        expect([whileAssembling.status, whileAssembling.body]).toEqual([
          400,
          expect.objectContaining({ reason: expect.stringMatching(/it is ASSEMBLING/) }),
        ]);
        await quick.startWorker();
        const done = await completed(c, s.uploadId);
        expect(done.body).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.any(String) });
      } finally {
        await quick.close();
      }
    } finally {
      await h.startWorker();
    }
  });

  it.each([
    ['the root', ''],
    ["Synapse's /file/v1", '/file/v1'],
  ])('serves the whole Synapse flow from one file endpoint base: %s', async (_what, prefix) => {
    const synapse = new MultipartClient({ base: `${h.base}${prefix}`, token: 'alice-token' });
    const content = patternBytes(PART + 4321, prefix.length + 40);
    const done = await synapse.upload(content, { fileName: `base${prefix.replace(/\//g, '-')}.bin`, partSizeBytes: PART });
    expect(done.status).toBe(200);
    const id = (done.body as Status).resultFileHandleId ?? '';
    expect((await synapse.fileHandle(id)).body).toMatchObject({ id, contentMd5: md5Hex(content), contentSize: content.length });
    const url = await synapse.fileHandleUrl(id, false);
    expect(url.status).toBe(200);
    const redirect = await synapse.fileHandleUrl(id);
    expect(redirect.status).toBe(307);
    for (const location of [String(url.body), redirect.headers.get('location') ?? '']) {
      expect(sha256Hex(Buffer.from(await (await fetch(location)).arrayBuffer()))).toBe(sha256Hex(content));
    }
    // Ferry's first spelling stays
    expect((await alice.request('GET', `/file/fileHandle/${id}`)).body).toMatchObject({ id });
    // a completed upload takes no more parts: refused as Synapse refuses it (400, not ADD_FAILED)
    const late = await synapse.add((done.body as Status).uploadId, 1, md5Hex(content.subarray(0, PART)));
    expect([late.status, late.body]).toEqual([
      400,
      expect.objectContaining({ reason: expect.stringMatching(/^Cannot add parts to completed file upload/) }),
    ]);
  });

  it('completes 20 concurrent uploads, each exactly once', async () => {
    const contents = Array.from({ length: 20 }, (_, i) => patternBytes(PART + 1000 * (i + 1), 100 + i));
    const results = await Promise.all(
      contents.map((c, i) => (i % 2 ? alice : bob).upload(c, { fileName: `many-${i}`, partSizeBytes: PART }, 2)),
    );
    const handles = new Set<string>();
    for (const [i, r] of results.entries()) {
      expect(r.status).toBe(200);
      const id = (r.body as Status).resultFileHandleId ?? '';
      handles.add(id);
      const object = await h.app.get(Catalog).get(`fileHandle/${id}`);
      expect(object?.sha256).toBe(sha256Hex(contents[i]));
    }
    expect(handles.size).toBe(20);
  }); // 100+ MB through parts and assembly: 3 s alone, several times that on a busy machine

  it('serves its OpenAPI description, documenting every route it serves', async () => {
    const r = await alice.request('GET', '/docs');
    expect(r.status).toBe(200);
    const doc = r.body as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toMatch(/^3\./);
    const served = [
      'post /file/multipart',
      'post /file/multipart/upload',
      'get /file/multipart/{uploadId}',
      'post /file/multipart/{uploadId}/presigned/url/batch',
      'post /file/multipart/{uploadId}/presignedurl/batch',
      'put /file/multipart/{uploadId}/add/{partNumber}',
      'put /file/multipart/{uploadId}/complete',
      'put /file/multipart/{uploadId}/parts/{partNumber}',
      'get /fileHandle/{id}',
      'get /fileHandle/{id}/url',
      'get /file/fileHandle/{id}',
      'get /file/fileHandle/{id}/url',
      'get /file/fileHandle/{id}/content',
      'post /files/',
      'options /files/',
      'head /files/{id}',
      'patch /files/{id}',
      'delete /files/{id}',
      'get /files/{id}',
      'options /files/{id}',
      'get /files/{id}/url',
      'get /upload',
      'get /upload/{file}',
      'get /healthz',
      'get /readyz',
      'get /metrics',
      'get /docs',
    ];
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => m !== 'parameters' && m !== 'servers')
        .map((m) => `${m} ${path}`),
    );
    // every control-plane path under both file endpoint bases, the rest at the root only
    expect((doc as unknown as { servers: { url: string }[] }).servers.map((s) => s.url)).toEqual(['/', '/file/v1']);
    for (const [path, ops] of Object.entries(doc.paths)) {
      const rootOnly = (ops as { servers?: { url: string }[] }).servers?.map((s) => s.url);
      if (rootOnly) {
        expect([path, rootOnly]).toEqual([path, ['/']]);
        continue;
      }
      const method = Object.keys(ops).find((m) => m !== 'parameters') ?? 'get';
      const concrete = path.replace('{uploadId}', 'mp_x').replace('{partNumber}', '1').replace('{id}', '1');
      const answer = await alice.request(method.toUpperCase(), `/file/v1${concrete}`);
      // a route that exists answers for itself (400, 404 for the unknown upload...), never "no such route"
      expect([path, (answer.body as { message?: string }).message ?? '']).not.toEqual([path, 'no such route']);
    }
    expect(documented.sort()).toEqual(served.sort());
    expect((await alice.request('GET', '/nope')).body).toMatchObject({ code: 'NOT_FOUND' });
  });
});

/** A PUT whose body is sent in two halves: the second only when released. */
function slowPut(url: string, data: Buffer): { firstBytesSent: Promise<void>; release(): void; abort(): void; status: Promise<number> } {
  const req = httpRequest(url, { method: 'PUT', headers: { 'content-length': String(data.length) } });
  let release = () => undefined as void;
  const status = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
  const half = Math.floor(data.length / 2);
  const firstBytesSent = new Promise<void>((resolve) => req.write(data.subarray(0, half), () => resolve()));
  release = () => void req.end(data.subarray(half));
  return { firstBytesSent, release: () => release(), abort: () => req.destroy(), status };
}

/** A PUT with chunked transfer encoding (no Content-Length). Status 0 if the server cut the connection. */
function putChunked(url: string, chunks: Buffer[], headers: Record<string, string>): Promise<{ status: number }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { method: 'PUT', headers: { ...headers, 'transfer-encoding': 'chunked' } });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('error', () => resolve({ status: 0 }));
    for (const c of chunks) req.write(c);
    req.end();
  });
}
