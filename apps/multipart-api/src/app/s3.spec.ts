import { REDIS } from '@ferry/core';
import { MultipartStore } from '@ferry/multipart';
import { type Redis, RedisKeys } from '@ferry/redis';
import { MultipartClient, TestS3, eventually, md5Hex, patternBytes, sha256Hex, startTestS3, waitFor } from '@ferry/testing';
import { MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const MiB = 1024 * 1024;
const PART = 5 * MiB;

type Status = { uploadId: string; state: string; partsState: string; resultFileHandleId?: string };
type Urls = { partPresignedUrls: { partNumber: number; uploadPresignedUrl: string; signedHeaders: Record<string, string> }[] };

/** multipart-api with FERRY_STORAGE=s3: parts go straight to the bucket, Ferry verifies and assembles. */
describe('multipart-api on S3 storage (s3rver, real Redis, HTTP and assembly worker)', () => {
  let s3: TestS3;
  let h: MultipartHarness;
  let alice: MultipartClient;
  const file = patternBytes(2 * PART + 1234, 41);
  const part = (n: number) => file.subarray((n - 1) * PART, n * PART);

  beforeAll(async () => {
    s3 = await startTestS3('multipart-bucket');
    h = await startMultipartApi({ ...s3.env, FERRY_MULTIPART_COMPLETE_WAIT_MS: '20000' });
    alice = h.client('alice-token');
  });

  afterAll(async () => {
    await h?.close();
    await s3?.stop();
  });

  async function started(content: Buffer, fileName: string): Promise<Status> {
    const r = await alice.start({
      fileName,
      contentType: 'application/octet-stream',
      contentMD5Hex: md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: PART,
    });
    expect(r.status).toBe(201);
    return r.body as unknown as Status;
  }

  /** How far the whole-file digests of the upload got. */
  async function digestOf(uploadId: string) {
    return (await h.app.get(MultipartStore).get(uploadId))?.digest ?? { parts: -1 };
  }

  /**
   * Completes the upload as clients do: again while it answers 202 (the assembly outlasted
   * FERRY_MULTIPART_COMPLETE_WAIT_MS, as it may on a busy machine). The final answer.
   */
  async function completed(uploadId: string) {
    let r = await alice.complete(uploadId);
    await waitFor(
      `the assembly of ${uploadId} to settle`,
      async () => r.status !== 202 || (r = await alice.complete(uploadId)).status !== 202,
    );
    return r;
  }

  it('hands out part URLs of the bucket itself, verifies each part there, assembles and serves the file from the bucket', async () => {
    const start = (
      await alice.start({
        fileName: 's3.bin',
        contentType: 'application/octet-stream',
        contentMD5Hex: md5Hex(file),
        fileSizeBytes: file.length,
        partSizeBytes: PART,
      })
    ).body as unknown as Status;
    const urls = ((await alice.urls(start.uploadId, [1, 2, 3], { contentType: 'application/octet-stream' })).body as Urls)
      .partPresignedUrls;
    for (const u of urls) {
      expect(u.uploadPresignedUrl.startsWith(`${s3.endpoint}/${s3.bucket}/staging/${start.uploadId}/`)).toBe(true);
      expect(u.uploadPresignedUrl).toMatch(/X-Amz-Signature=/);
      expect(u.signedHeaders).toEqual({ 'Content-Type': 'application/octet-stream' });
    }
    // add-part before the PUT: nothing in the bucket yet
    expect((await alice.add(start.uploadId, 1, md5Hex(part(1)))).body).toMatchObject({
      addPartState: 'ADD_FAILED',
      errorMessage: expect.stringMatching(/no bytes are stored/),
    });
    for (const u of urls) expect((await MultipartClient.put(u.uploadPresignedUrl, part(u.partNumber), u.signedHeaders)).status).toBe(200);
    // the MD5 the client claims is checked against what the bucket holds
    expect((await alice.add(start.uploadId, 2, md5Hex(part(1)))).body).toMatchObject({
      addPartState: 'ADD_FAILED',
      errorMessage: expect.stringMatching(/MD5 of the stored bytes of part 2/),
    });
    for (const n of [1, 2, 3])
      expect((await alice.add(start.uploadId, n, md5Hex(part(n)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    expect((await alice.add(start.uploadId, 3, md5Hex(part(3)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' }); // idempotent
    const done = (await completed(start.uploadId)).body as unknown as Status;
    expect(done).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.any(String) });
    expect(await s3.keys('staging/')).toEqual([]);
    // the download URL is a presigned GET of the content-addressed blob, ranges included
    const url = String((await alice.request('GET', `/file/fileHandle/${done.resultFileHandleId}/url?redirect=false`)).body);
    expect(url.startsWith(`${s3.endpoint}/${s3.bucket}/blobs/sha256/`)).toBe(true);
    expect(sha256Hex(Buffer.from(await (await fetch(url)).arrayBuffer()))).toBe(sha256Hex(file));
    const ranged = await fetch(url, { headers: { range: `bytes=${PART - 2}-${PART + 1}` } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer())).toEqual(file.subarray(PART - 2, PART + 2));
    // the same file again: deduplicated at once
    const again = (
      await alice.start({
        fileName: 'copy.bin',
        contentType: 'application/octet-stream',
        contentMD5Hex: md5Hex(file),
        fileSizeBytes: file.length,
        partSizeBytes: PART,
      })
    ).body as unknown as Status;
    expect(again.state).toBe('COMPLETED');
  });

  it('publishes the bytes it hashed, even when a part is PUT again after it was hashed', async () => {
    // Part URLs reach the bucket and stay valid; if the digests were computed over the parts where
    // clients can still PUT and the parts then copied into the blob, the blob named by the verified
    // sha256 could hold other bytes (served to everyone whose file has that sha256). The digests
    // follow the parts as they are added, and what they hash is what is published.
    const content = patternBytes(PART + 77, 43);
    const start = await started(content, 'race.bin');
    const [u1, u2] = ((await alice.urls(start.uploadId, [1, 2])).body as Urls).partPresignedUrls;
    await MultipartClient.put(u1.uploadPresignedUrl, content.subarray(0, PART), u1.signedHeaders);
    await MultipartClient.put(u2.uploadPresignedUrl, content.subarray(PART), u2.signedHeaders);
    for (const [n, bytes] of [
      [1, content.subarray(0, PART)],
      [2, content.subarray(PART)],
    ] as const) {
      expect((await alice.add(start.uploadId, n, md5Hex(bytes))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    }
    await waitFor('the digests to cover both parts', async () => (await digestOf(start.uploadId)).parts === 2);
    // hashed: a client PUTs part 2 again, same length, other bytes
    expect((await MultipartClient.put(u2.uploadPresignedUrl, Buffer.alloc(77, 0xee), u2.signedHeaders)).status).toBe(200);
    const done = (await completed(start.uploadId)).body as unknown as Status;
    expect(done).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.any(String) });
    const url = String((await alice.request('GET', `/file/fileHandle/${done.resultFileHandleId}/url?redirect=false`)).body);
    expect(url).toContain(`/blobs/sha256/${sha256Hex(content).slice(0, 2)}`);
    expect(sha256Hex(Buffer.from(await (await fetch(url)).arrayBuffer()))).toBe(sha256Hex(content));
    expect(await s3.keys('staging/')).toEqual([]); // the parts and the private copy are gone
  });

  it('makes a part PUT again before it was hashed missing again, and fails an upload completed with such a part', async () => {
    const content = patternBytes(PART + 10, 44);
    const part2 = content.subarray(PART);
    const start = await started(content, 'replaced.bin');
    const [u1, u2] = ((await alice.urls(start.uploadId, [1, 2])).body as Urls).partPresignedUrls;
    await MultipartClient.put(u1.uploadPresignedUrl, content.subarray(0, PART), u1.signedHeaders);
    await MultipartClient.put(u2.uploadPresignedUrl, part2, u2.signedHeaders);
    // another process holds the digest lease: nothing is hashed until it is released
    const lease = h.app.get(RedisKeys).uploadLease(start.uploadId);
    const redis = h.app.get<Redis>(REDIS);
    await redis.set(lease, 'elsewhere', 'PX', 60_000);
    expect((await alice.add(start.uploadId, 1, md5Hex(content.subarray(0, PART)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    expect((await alice.add(start.uploadId, 2, md5Hex(part2))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    // the client PUTs part 2 again after adding it (Ferry does not see PUTs to the bucket)
    const other = Buffer.alloc(10, 1);
    await MultipartClient.put(u2.uploadPresignedUrl, other, u2.signedHeaders);
    await redis.del(lease);
    // the next round finds it: part 2 is missing again, as add-part would say
    await alice.add(start.uploadId, 1, md5Hex(content.subarray(0, PART))); // (an add starts a round)
    await waitFor('part 2 to be missing again', async () => ((await alice.status(start.uploadId)).body as Status).partsState === '10');
    expect((await alice.add(start.uploadId, 2, md5Hex(part2))).body).toMatchObject({
      addPartState: 'ADD_FAILED',
      errorMessage: expect.stringContaining(`MD5 of the stored bytes of part 2 is ${md5Hex(other)}`),
    });
    // completed while a replaced part is not yet hashed: the upload fails, nothing is published
    await MultipartClient.put(u2.uploadPresignedUrl, part2, u2.signedHeaders);
    await redis.set(lease, 'elsewhere', 'PX', 60_000);
    expect((await alice.add(start.uploadId, 2, md5Hex(part2))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    await MultipartClient.put(u2.uploadPresignedUrl, other, u2.signedHeaders);
    await redis.del(lease);
    const done = await completed(start.uploadId);
    expect(done.status).toBe(400);
    expect((done.body as { message: string }).message).toMatch(/part 2 was PUT again after it was added/);
    expect(await h.storage.blobSize(sha256Hex(content))).toBeUndefined();
    expect(await h.storage.blobSize(sha256Hex(Buffer.concat([content.subarray(0, PART), other])))).toBeUndefined();
    await eventually(async () => expect(await s3.keys('staging/')).toEqual([]));
  });

  it('refuses a part of the wrong size that reached the bucket', async () => {
    const content = patternBytes(PART + 10, 42);
    const start = (
      await alice.start({
        fileName: 'bad.bin',
        contentType: 'application/octet-stream',
        contentMD5Hex: md5Hex(content),
        fileSizeBytes: content.length,
        partSizeBytes: PART,
      })
    ).body as unknown as Status;
    const [u1, u2] = ((await alice.urls(start.uploadId, [1, 2])).body as Urls).partPresignedUrls;
    // s3rver does not enforce the signed Content-Length (S3 does): the size check of add-part still holds
    await MultipartClient.put(u1.uploadPresignedUrl, content.subarray(0, PART - 1), u1.signedHeaders);
    expect((await alice.add(start.uploadId, 1, md5Hex(content.subarray(0, PART - 1)))).body).toMatchObject({
      addPartState: 'ADD_FAILED',
      errorMessage: expect.stringMatching(/exactly 5242880 bytes; the stored one has 5242879/),
    });
    await MultipartClient.put(u1.uploadPresignedUrl, content.subarray(0, PART), u1.signedHeaders);
    await MultipartClient.put(u2.uploadPresignedUrl, content.subarray(PART), u2.signedHeaders);
    expect((await alice.add(start.uploadId, 1, md5Hex(content.subarray(0, PART)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    expect((await alice.add(start.uploadId, 2, md5Hex(content.subarray(PART)))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    const done = await completed(start.uploadId);
    expect(done.status).toBe(200);
  });
});
