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

const bucketOf = (storage: S3Storage) => (storage as unknown as { options: { bucket: string } }).options.bucket;

/** A fresh bucket per case (created by the storage on first use). */
function freshStorage(partBytes = PART): S3Storage {
  return new S3Storage(client(), { bucket: `ferry-case-${process.pid}-${bucketCount++}`, partBytes, createBucket: true });
}

/** Bytes under an upload's staging prefix, whatever the objects are. */
async function storedBytes(bucket: string, uploadId: string): Promise<number> {
  const page = await client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `staging/${uploadId}/` }));
  return (page.Contents ?? []).reduce((n, o) => n + (o.Size ?? 0), 0);
}

describeStorageConformance(
  's3 (s3rver)',
  async () => {
    const storage = freshStorage();
    const bucket = bucketOf(storage);
    return {
      storage,
      reopen: () => new S3Storage(client(), { bucket, partBytes: PART }),
      storedBytes: (uploadId) => storedBytes(bucket, uploadId),
      cleanup: async () => undefined,
    };
  },
  { parts: false, partBytes: PART },
);

describe('S3Storage layout and parts', () => {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  const collect = async (stream: AsyncIterable<unknown>) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };

  async function keys(storage: S3Storage, prefix: string): Promise<string[]> {
    return (await objects(storage, prefix)).map(([key]) => key);
  }

  /** Keys under `prefix` with their sizes. */
  async function objects(storage: S3Storage, prefix: string): Promise<[string, number][]> {
    const bucket = bucketOf(storage);
    const page = await client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => [o.Key as string, o.Size ?? 0]);
  }

  const part = (id: string, index: number) => `staging/${id}/${String(index).padStart(8, '0')}`;
  const piece = (id: string, index: number, start: number) =>
    `staging/${id}/tail-${String(index).padStart(8, '0')}-${String(start).padStart(15, '0')}`;

  it('writes a sync below a part as tail pieces holding only bytes no piece holds yet, which the whole part supersedes', async () => {
    const storage = freshStorage();
    const data = randomBytes(2 * PART + 10);
    const f = await storage.openStaging('tailed', 0);
    await f.write(data.subarray(0, PART / 4), 0);
    expect(await f.sync()).toBe(PART / 4);
    await f.write(data.subarray(PART / 4, PART / 2), PART / 4);
    expect(await f.sync()).toBe(PART / 2);
    expect(await objects(storage, 'staging/tailed/')).toEqual([
      [piece('tailed', 0, 0), PART / 4],
      [piece('tailed', 0, PART / 4), PART / 4],
    ]);
    // the part fills: the sync that finds it in the bucket answers its boundary (no request of its
    // own), the next one writes what follows as the first piece of the next part
    await f.write(data.subarray(PART / 2, PART + 20), PART / 2);
    expect(await f.sync()).toBe(PART);
    expect(await f.sync()).toBe(PART + 20);
    await f.close(); // (waits for the deletion of the superseded pieces, which began when the part was in)
    expect(await objects(storage, 'staging/tailed/')).toEqual([
      [part('tailed', 0), PART],
      [piece('tailed', 1, PART), 20],
    ]);
    // a piece left behind by a crash between writing its part and deleting it is ignored, then removed on open
    await storage.putTailPiece('tailed', 0, 0, 0, randomBytes(5));
    expect(await storage.stagingSize('tailed')).toBe(PART + 20);
    expect(await collect(storage.readStaging('tailed', 0, PART + 20))).toEqual(data.subarray(0, PART + 20));
    const g = await storage.openStaging('tailed', PART + 20);
    expect(await keys(storage, 'staging/tailed/')).toEqual([part('tailed', 0), piece('tailed', 1, PART)]);
    await g.write(data.subarray(PART + 20), PART + 20);
    expect(await g.sync(true)).toBe(data.length);
    await g.close();
    expect(await keys(storage, 'staging/tailed/')).toEqual([part('tailed', 0), part('tailed', 1), part('tailed', 2)]);
    expect(await collect(storage.readStaging('tailed', 0, data.length))).toEqual(data);
  });

  it("reads what a crash leaves right: superseded pieces, pieces after a gap, a stale writer's piece across the committed size", async () => {
    const storage = freshStorage();
    const data = randomBytes(2 * PART);
    await storage.putPart('left', 0, 0, data.subarray(0, PART));
    await storage.putTailPiece('left', 0, 0, 0, randomBytes(100)); // superseded by part 0
    await storage.putTailPiece('left', 0, 1, PART, data.subarray(PART, PART + 100));
    await storage.putTailPiece('left', 0, 1, PART + 300, randomBytes(50)); // after a gap
    await storage.putTailPiece('left', 0, 2, PART + 100, randomBytes(10)); // of a part not next
    expect(await storage.stagingSize('left')).toBe(PART + 100);
    expect(await collect(storage.readStaging('left', 0, PART + 100))).toEqual(data.subarray(0, PART + 100));
    // a writer that lost its lease wrote a piece across the committed size: cut to it on open
    await storage.putTailPiece('left', 0, 1, PART + 100, Buffer.concat([data.subarray(PART + 100, PART + 150), randomBytes(50)]));
    expect(await storage.stagingSize('left')).toBe(PART + 200);
    const f = await storage.openStaging('left', PART + 150);
    expect(await objects(storage, 'staging/left/')).toEqual([
      [part('left', 0), PART],
      [piece('left', 1, PART), 100],
      [piece('left', 1, PART + 100), 50],
    ]);
    await f.write(data.subarray(PART + 150), PART + 150);
    expect(await f.sync(true)).toBe(2 * PART);
    await f.close();
    expect(await keys(storage, 'staging/left/')).toEqual([part('left', 0), part('left', 1)]);
    expect(sha(await collect(storage.readStaging('left', 0, 2 * PART)))).toBe(sha(data));
  });

  it("never lets a previous writer's late PUT replace its successor's bytes: the higher lease fence is read, the lower is stray", async () => {
    const storage = freshStorage();
    const data = randomBytes(3 * PART);
    // writer of fence 1 commits part 0, then stalls (a paused process) with part 1 on its way
    const a = await storage.openStaging('fenced', 0, 1);
    await a.write(data.subarray(0, PART), 0);
    expect(await a.sync()).toBe(PART);
    // its lease lapsed: the writer of fence 2 resumes at the committed size and finishes
    const b = await storage.openStaging('fenced', PART, 2);
    await b.write(data.subarray(PART), PART);
    expect(await b.sync(true)).toBe(3 * PART);
    await b.close();
    // then the stalled writer's PUTs land: its part 1 and a tail piece of part 2, other bytes
    await storage.putPart('fenced', 1, 1, randomBytes(PART));
    await storage.putTailPiece('fenced', 1, 2, 2 * PART, randomBytes(10));
    expect(await storage.stagingSize('fenced')).toBe(3 * PART);
    expect(sha(await collect(storage.readStaging('fenced', 0, 3 * PART)))).toBe(sha(data));
    // a stalled PUT that lands before its successor writes the same part loses all the same
    const c = await storage.openStaging('fenced', 2 * PART, 3);
    await storage.putPart('fenced', 1, 2, randomBytes(PART)); // fence 1 again, late: part 2
    await c.write(data.subarray(2 * PART), 2 * PART);
    expect(await c.sync(true)).toBe(3 * PART);
    await c.close();
    expect(sha(await collect(storage.readStaging('fenced', 0, 3 * PART)))).toBe(sha(data));
    await storage.publishStaging('fenced', sha(data));
    expect(sha(await collect(storage.readBlob(sha(data), 0, data.length)))).toBe(sha(data));
    expect(await keys(storage, 'staging/fenced/')).toEqual([]);
  });

  it('costs one request per part while parts arrive between syncs; below a part one PUT per sync with new bytes, and one delete per part', async () => {
    const counted = client();
    const requests: string[] = [];
    counted.middlewareStack.add(
      (next, context) => (args) => {
        requests.push(String(context.commandName).replace(/Command$/, ''));
        return next(args);
      },
      { step: 'initialize', name: 'countRequests' },
    );
    const storage = new S3Storage(counted, { bucket: `ferry-cost-${process.pid}`, partBytes: PART, createBucket: true });
    const f = await storage.openStaging('cost', 0);
    const data = randomBytes(4 * PART);
    let at = 0;
    const write = async (n: number) => {
      await f.write(data.subarray(at, at + n), at);
      at += n;
    };
    // a fast stream: each sync finds a part in the bucket, and answers its boundary
    requests.length = 0;
    await write(PART + 10);
    expect(await f.sync()).toBe(PART);
    await write(PART);
    expect(await f.sync()).toBe(2 * PART);
    expect(requests).toEqual(['PutObject', 'PutObject']);
    // a slow one: each sync that finds new bytes PUTs them (only them) as a piece
    requests.length = 0;
    for (let i = 0; i < 4; i++) {
      await write(PART / 8);
      expect(await f.sync()).toBe(at);
    }
    expect(await f.sync()).toBe(at); // nothing new: no request
    expect(requests).toEqual(['PutObject', 'PutObject', 'PutObject', 'PutObject']);
    expect((await objects(storage, 'staging/cost/')).slice(2).map(([, size]) => size)).toEqual([
      10 + PART / 8,
      PART / 8,
      PART / 8,
      PART / 8,
    ]);
    // the part fills: its PUT, then one request deletes its four pieces
    requests.length = 0;
    await write(PART);
    expect(await f.sync()).toBe(3 * PART);
    await f.close();
    expect(requests).toEqual(['PutObject', 'DeleteObjects']);
    expect(await keys(storage, 'staging/cost/')).toEqual([part('cost', 0), part('cost', 1), part('cost', 2)]);
  });

  it('stages whole parts as objects, answers a sync that finds parts arrived with their boundary, and publishes by digest', async () => {
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
    // its last old part is shorter than its own parts: read back, it became the tail of the part to fill
    expect(await objects(b, 'staging/mixed/')).toEqual([
      [part('mixed', 0), PART],
      [piece('mixed', 1, PART), PART],
    ]);
    await g.write(data.subarray(2 * PART, 3 * PART + 7), 2 * PART);
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

  it('answers a sync made while a write is running with parts really in the bucket, the next one with everything', async () => {
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
    expect(await f.sync()).toBe(6 * PART + 10);
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
