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
  return createS3Client({ endpoint: s3.endpoint, region: 'us-east-1', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true });
}

/** A fresh bucket per case (created by the storage on first use). */
function freshStorage(partBytes = PART): S3Storage {
  return new S3Storage(client(), { bucket: `ferry-case-${process.pid}-${bucketCount++}`, partBytes, createBucket: true });
}

describeStorageConformance('s3 (s3rver)', async () => ({ storage: freshStorage(), cleanup: async () => undefined }), { parts: false });

describe('S3Storage layout and parts', () => {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  async function keys(storage: S3Storage, prefix: string): Promise<string[]> {
    const bucket = (storage as unknown as { options: { bucket: string } }).options.bucket;
    const page = await client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => o.Key as string);
  }

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

  it('resumes at a committed part boundary on another instance, dropping parts that were never committed', async () => {
    const a = freshStorage();
    const data = randomBytes(3 * PART);
    const f = await a.openStaging('resumed', 0);
    await f.write(data, 0);
    await f.sync(); // three parts durable, but say only one was committed before the writer died
    const b = new S3Storage(client(), { bucket: (a as unknown as { options: { bucket: string } }).options.bucket, partBytes: PART });
    await expect(b.openStaging('resumed', PART + 1)).rejects.toThrow(/not a part boundary/);
    const g = await b.openStaging('resumed', PART);
    expect(await keys(b, 'staging/')).toEqual(['staging/resumed/00000000']);
    await g.write(data.subarray(PART), PART);
    expect(await g.sync(true)).toBe(data.length);
    const back: Buffer[] = [];
    for await (const c of b.readStaging('resumed', 0, data.length)) back.push(c as Buffer);
    expect(sha(Buffer.concat(back))).toBe(sha(data));
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
