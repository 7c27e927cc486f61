import * as grpc from '@grpc/grpc-js';
import {
  TestS3,
  bearer,
  bidiWrite,
  chunkedRequests,
  expectGrpcCode,
  gcsQueryWriteStatus,
  gcsRequests,
  patternBytes,
  queryWriteStatus,
  randomName,
  readBytes,
  readObject,
  sha256Hex,
  startResumableWrite,
  startTestS3,
  writeObject,
  writeRequests,
} from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const MiB = 1024 * 1024;
const PART = 5 * MiB;

/**
 * ingest-grpc with FERRY_STORAGE=s3: the same protocols; the committed size advances by whole parts
 * while a stream runs, and covers everything once a client flushes or the stream stops.
 */
describe('ingest-grpc on S3 storage (s3rver, real Redis and sockets)', () => {
  let s3: TestS3;
  let h: IngestHarness;

  beforeAll(async () => {
    s3 = await startTestS3('ingest-bucket');
    h = await startIngest({ ...s3.env, FERRY_S3_PART_SIZE: String(PART) });
  });

  afterAll(async () => {
    await h?.close();
    await s3?.stop();
  });

  it('ByteStream: a stream that stops commits all it sent (the part being filled as a tail), resumes there, and publishes one blob', async () => {
    const name = randomName('s3/bytestream');
    const data = patternBytes(2 * PART + 3 * MiB + 11, 31);
    // a stream that ends unfinished 2 MiB into the third part: all of it is committed
    const sent = 2 * PART + 2 * MiB;
    const committed = await writeRequests(h.client, chunkedRequests(name, data.subarray(0, sent), { finish: false, chunk: MiB }));
    expect(committed).toBe(sent);
    expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: sent, complete: false });
    expect(await s3.keys(`staging/`)).toEqual(expect.arrayContaining([expect.stringMatching(/\/tail-00000002-\d{15}(\.f\d+)?$/)]));
    await expectGrpcCode(readBytes(h.client, name), grpc.status.NOT_FOUND);
    // resuming from the committed size re-hashes the committed prefix read back from the bucket
    expect(await writeRequests(h.client, chunkedRequests(name, data, { offset: sent, chunk: MiB }))).toBe(data.length);
    expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: data.length, complete: true });
    const back = await readBytes(h.client, name);
    expect(sha256Hex(back.data)).toBe(sha256Hex(data));
    expect(await s3.keys('staging/')).toEqual([]);
    expect(await s3.keys('blobs/')).toContain(`blobs/sha256/${sha256Hex(data).slice(0, 2)}/${sha256Hex(data)}`);
  });

  it('GCS: a flush persists everything sent, below a part too; the object finishes and reads back with ranges', async () => {
    const object = randomName('s3/gcs');
    const data = patternBytes(PART + 2 * MiB, 32);
    const uploadId = await startResumableWrite(h.storage, 's3-bucket', object);
    // 256 KiB, flushed: persisted at once, not held back to a part boundary
    const small = [...gcsRequests(data.subarray(0, 256 * 1024), { first: { upload_id: uploadId }, finish: false, chunk: 256 * 1024 })];
    Object.assign(small[0], { flush: true, state_lookup: true });
    expect(Number((await bidiWrite(h.storage, small))[0].persisted_size)).toBe(256 * 1024);
    const requests = [
      ...gcsRequests(data.subarray(0, PART + MiB), { first: { upload_id: uploadId }, offset: 256 * 1024, finish: false, chunk: MiB }),
    ];
    const last = requests[requests.length - 1];
    Object.assign(last, { flush: true, state_lookup: true });
    const answers = await bidiWrite(h.storage, requests);
    expect(Number(answers[answers.length - 1].persisted_size)).toBe(PART + MiB);
    expect(Number((await gcsQueryWriteStatus(h.storage, uploadId)).persisted_size)).toBe(PART + MiB);
    const done = await writeObject(h.storage, gcsRequests(data, { first: { upload_id: uploadId }, offset: PART + MiB, chunk: MiB }));
    expect(Number(done.resource?.size)).toBe(data.length);
    const { data: range } = await readObject(h.storage, 's3-bucket', object, { read_offset: PART - 10, read_limit: 100 });
    expect(range).toEqual(data.subarray(PART - 10, PART + 90));
    expect(sha256Hex((await readObject(h.storage, 's3-bucket', object)).data)).toBe(sha256Hex(data));
  });

  it('stores an empty object and a small one (a single short part)', async () => {
    const empty = randomName('s3/empty');
    expect(await writeRequests(h.client, [{ resource_name: empty, write_offset: 0, finish_write: true }], bearer())).toBe(0);
    expect((await readBytes(h.client, empty)).data.length).toBe(0);
    const small = randomName('s3/small');
    const data = patternBytes(1000, 33);
    expect(await writeRequests(h.client, chunkedRequests(small, data, { chunk: 300 }))).toBe(1000);
    expect((await readBytes(h.client, small)).data).toEqual(data);
  });
});
