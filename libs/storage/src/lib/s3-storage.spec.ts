import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { TestS3, startTestS3 } from '@ferry/testing';
import { S3Storage, createS3Client } from './s3-storage';
import { describeStorageConformance } from './storage.conformance';

const PART = 64 * 1024; // S3 wants 5 MiB; s3rver takes any size, which keeps these tests small

let s3: TestS3;
let bucketCount = 0;

beforeAll(async () => {
  s3 = await startTestS3();
});

afterAll(async () => {
  await s3.stop();
});

function client() {
  return createS3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    forcePathStyle: true,
  });
}

/** A fresh bucket per case (created by the storage on first use). */
function freshStorage(partBytes = PART): S3Storage {
  return new S3Storage(client(), { bucket: `ferry-case-${process.pid}-${bucketCount++}`, partBytes, createBucket: true });
}

describeStorageConformance('s3 (s3rver)', async () => ({ storage: freshStorage(), cleanup: async () => undefined }), { parts: false });

describe('S3Storage layout and parts', () => {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  const bucketOf = (storage: S3Storage) => (storage as unknown as { options: { bucket: string } }).options.bucket;
  const collect = async (stream: AsyncIterable<unknown>) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };

  async function keys(storage: S3Storage, prefix: string): Promise<string[]> {
    const bucket = bucketOf(storage);
    const page = await client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => o.Key as string);
  }

  it('writes the part being filled as a tail object on syncAll, which the whole part replaces', async () => {
    const storage = freshStorage();
    const data = randomBytes(2 * PART + 10);
    const f = await storage.openStaging('tailed', 0);
    await f.write(data.subarray(0, PART / 4), 0);
    expect(await f.sync()).toBe(0); // the frequent commits: whole parts only, no extra request
    expect(await f.syncAll()).toBe(PART / 4);
    expect(await keys(storage, 'staging/tailed/')).toEqual(['staging/tailed/tail-00000000']);
    await f.write(data.subarray(PART / 4, PART + 20), PART / 4);
    expect(await f.sync()).toBe(PART);
    // the whole part replaced its tail (deleted once the part is in); the next part has none yet
    for (let i = 0; i < 50 && (await keys(storage, 'staging/tailed/')).length > 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await keys(storage, 'staging/tailed/')).toEqual(['staging/tailed/00000000']);
    expect(await f.syncAll()).toBe(PART + 20);
    await f.close();
    // a tail left behind by a crash after its part was written is ignored, then removed on open
    await storage.putTail('tailed', 0, data.subarray(0, 5));
    const g = await storage.openStaging('tailed', PART + 20);
    expect(await keys(storage, 'staging/tailed/')).toEqual(['staging/tailed/00000000', 'staging/tailed/tail-00000001']);
    await g.write(data.subarray(PART + 20), PART + 20);
    expect(await g.sync(true)).toBe(data.length);
    await g.close();
    expect(await collect(storage.readStaging('tailed', 0, data.length))).toEqual(data);
  });

  it('stages whole parts as objects, keeps the tail in memory until the final sync, and publishes by digest', async () => {
    const storage = freshStorage();
    const data = randomBytes(2 * PART + 100);
    const f = await storage.openStaging('seq', 0);
    await f.write(data.subarray(0, PART + 50), 0);
    expect(await f.sync()).toBe(PART);
    expect(await keys(storage, 'staging/')).toEqual(['staging/seq/00000000']);
    await f.write(data.subarray(PART + 50), PART + 50);
    expect(await f.sync()).toBe(2 * PART);
    expect(await f.sync(true)).toBe(data.length);
    await expect(f.write(Buffer.from('x'), data.length)).rejects.toThrow(/last part is written/);
    await f.close();
    expect(await keys(storage, 'staging/')).toEqual(['staging/seq/00000000', 'staging/seq/00000001', 'staging/seq/00000002']);
    await storage.publishStaging('seq', sha(data));
    expect(await keys(storage, '')).toEqual([`blobs/sha256/${sha(data).slice(0, 2)}/${sha(data)}`]);
    const back: Buffer[] = [];
    for await (const c of storage.readBlob(sha(data), 0, data.length)) back.push(c as Buffer);
    expect(Buffer.concat(back)).toEqual(data);
  });

  it('resumes on another instance at the committed size, dropping parts that were never committed', async () => {
    const a = freshStorage();
    const data = randomBytes(3 * PART);
    const f = await a.openStaging('resumed', 0);
    await f.write(data, 0);
    await f.sync(); // three parts durable, but say only one was committed before the writer died
    const b = new S3Storage(client(), { bucket: bucketOf(a), partBytes: PART });
    const g = await b.openStaging('resumed', PART);
    expect(await keys(b, 'staging/')).toEqual(['staging/resumed/00000000']);
    await g.write(data.subarray(PART), PART);
    expect(await g.sync(true)).toBe(data.length);
    expect(sha(await collect(b.readStaging('resumed', 0, data.length)))).toBe(sha(data));
  });

  it('resumes inside a part (a writer with another part size committed it), and after a final short part', async () => {
    const data = randomBytes(5 * PART);
    const a = freshStorage(PART);
    const f = await a.openStaging('mixed', 0);
    await f.write(data.subarray(0, 2 * PART + 100), 0);
    expect(await f.sync()).toBe(2 * PART);
    // the next writer uses parts of 1.5 PART: the committed size is a boundary of the old parts only
    const b = new S3Storage(client(), { bucket: bucketOf(a), partBytes: PART + PART / 2 });
    const g = await b.openStaging('mixed', 2 * PART);
    await g.write(data.subarray(2 * PART, 3 * PART + 7), 2 * PART);
    // its last old part is shorter than its own parts: it was read back and begins its first part
    expect(await g.sync()).toBe(PART + PART + PART / 2);
    expect(await g.sync(true)).toBe(3 * PART + 7); // a final short part
    await g.close();
    // and a third writer resumes in the middle of that writer's first part, then after its short tail
    const c = new S3Storage(client(), { bucket: bucketOf(a), partBytes: PART });
    const h = await c.openStaging('mixed', 2 * PART + 10);
    await h.write(data.subarray(2 * PART + 10, 4 * PART), 2 * PART + 10);
    expect(await h.sync(true)).toBe(4 * PART);
    await h.close();
    const i = await c.openStaging('mixed', 4 * PART);
    await i.write(data.subarray(4 * PART), 4 * PART);
    expect(await i.sync(true)).toBe(5 * PART);
    expect(sha(await collect(c.readStaging('mixed', 0, data.length)))).toBe(sha(data));
    await c.publishStaging('mixed', sha(data));
    expect(sha(await collect(c.readBlob(sha(data), 0, data.length)))).toBe(sha(data));
  });

  it('reports as durable only whole parts already in the bucket, even while a write is running', async () => {
    const storage = freshStorage();
    const f = await storage.openStaging('racing', 0);
    const data = randomBytes(6 * PART + 10);
    await f.write(data.subarray(0, PART + 10), 0);
    // a sync while the next write (five more parts) is still running: whatever it answers must be
    // a part boundary that really is in the bucket (a replica resumes from it)
    const running = f.write(data.subarray(PART + 10), PART + 10);
    const durable = await f.sync();
    expect(durable % PART).toBe(0);
    expect(await storage.stagingSize('racing')).toBeGreaterThanOrEqual(durable);
    await running;
    expect(await f.sync()).toBe(6 * PART);
    await f.close();
    const resumed = await storage.openStaging('racing', durable);
    await resumed.close();
  });

  it('refuses writes out of order', async () => {
    const storage = freshStorage();
    const f = await storage.openStaging('order', 0);
    await expect(f.write(Buffer.from('late'), 10)).rejects.toThrow(/written in order/);
    await f.close();
  });

  it('does not accept multipart parts through Ferry (they go straight to the bucket)', async () => {
    await expect(freshStorage().openStagingForParts('mp', 10)).rejects.toThrow(/straight to the bucket/);
  });

  it('fails plainly when the store is unreachable', async () => {
    const storage = new S3Storage(
      createS3Client({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', accessKeyId: 'x', secretAccessKey: 'y', forcePathStyle: true }),
      { bucket: 'nowhere', partBytes: PART },
    );
    await expect(storage.check()).rejects.toThrow();
  });
});
