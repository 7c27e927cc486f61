import type * as S3Sdk from '@aws-sdk/client-s3';
import type * as S3Presigner from '@aws-sdk/s3-request-presigner';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { InternalError, NotFoundError, ResourceExhaustedError } from '@ferry/errors';
import { DirectAccess, SHA256_EMPTY, StagingEntry, StagingFile, Storage, assertSha256, assertUploadId } from './storage';

/**
 * A module required on first use rather than at import. The AWS SDK costs every process that
 * loads it ~10 MiB of memory (measured on ingest-grpc at idle), and only the S3 backend needs it.
 */
function onFirstUse<T extends object>(load: () => T): T {
  let loaded: T | undefined;
  return new Proxy({} as T, { get: (_, key) => Reflect.get((loaded ??= load()), key) });
}
const aws = onFirstUse<typeof S3Sdk>(() => require('@aws-sdk/client-s3'));
const awsPresigner = onFirstUse<typeof S3Presigner>(() => require('@aws-sdk/s3-request-presigner'));
type S3Client = S3Sdk.S3Client;

/** HEAD requests in flight at once in blobSizes. */
const HEAD_CONCURRENCY = 32;

/** S3 limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html). */
export const S3_LIMITS = {
  /** Every part of a multipart upload but the last, and every source range of UploadPartCopy. */
  minPartBytes: 5 * 1024 * 1024,
  maxPartBytes: 5 * 1024 * 1024 * 1024,
  maxParts: 10_000,
  /** The largest object a single PutObject or CopyObject writes. */
  maxSingleObjectBytes: 5 * 1024 * 1024 * 1024,
} as const;

export interface S3StorageOptions {
  bucket: string;
  /** Size of the parts a sequential upload is written in (what a sync writes below a part goes to tail pieces). */
  partBytes: number;
  /** Creates the bucket on first use when it does not exist (local stacks: MinIO, s3rver). */
  createBucket?: boolean;
}

export interface S3ConnectionOptions {
  endpoint?: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
}

/** An S3 client for Ferry: checksums only where S3 requires them (S3-compatible stores differ). */
export function createS3Client(o: S3ConnectionOptions): S3Client {
  return new aws.S3Client({
    endpoint: o.endpoint,
    region: o.region,
    forcePathStyle: o.forcePathStyle,
    credentials: o.accessKeyId && o.secretAccessKey ? { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey } : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * Storage in an S3-compatible bucket:
 *
 *   staging/<uploadId>/<part index, 8 digits>[.f<fence>]
 *                                                an upload in progress, as part objects (written by
 *                                                Ferry: `partBytes` each, the last one shorter, the
 *                                                writer's lease fence in the key, see fenceSuffix;
 *                                                multipart parts: PUT by clients, the client's size)
 *   staging/<uploadId>/tail-<part index, 8 digits>-<start, 15 digits>[.f<fence>]
 *                                                a tail piece: bytes [start, start + its size) of a
 *                                                part not yet whole, made durable by a sync
 *   blobs/sha256/<ab>/<sha256>                   published content, one object per digest
 *
 * A staging object is the run of parts from index 0 without a gap, then the tail pieces of the next
 * part that follow each other from where that part begins. Everything else under its prefix is
 * stale (a part past a gap, tail pieces of a part that is there whole, a piece after a gap) and is
 * ignored, and deleted when the upload is opened, published or deleted.
 *
 * A sequential upload (ByteStream, GCS, an object PUT) fills a part in memory and PUTs it when full.
 * A sync makes durable what was written, to the byte: it waits for the parts on their way and then
 * PUTs the bytes of the part being filled that no piece holds yet as one more tail piece (as tusd's
 * S3 store keeps an incomplete part), so a piece carries only bytes no earlier piece carried and a
 * byte is sent at most twice (in a piece, then in its part). When a whole part reached the bucket
 * since the last sync, a sync answers that part boundary instead and leaves the rest to the next
 * one: a fast stream makes no request beyond its parts, a slow one one PUT per sync that finds new
 * bytes (the writer syncs every FERRY_FSYNC_INTERVAL_MS). `syncAll` (a client asking what is
 * persisted, a stream stopping) always writes the piece. Once a part is in the bucket whole, its
 * pieces are deleted (one request); a crash before that leaves them superseded, never read again.
 * Each part is its own object, so a resumed upload can read its committed prefix back (the parts
 * of an unfinished S3 multipart upload cannot be read). Publishing assembles the parts into the
 * blob server-side (CopyObject for one part, UploadPartCopy into a multipart upload for more; tail
 * pieces, if an upload is published without a final sync, joined into its last part) and falls back
 * to streaming the parts through Ferry only where the store lacks UploadPartCopy. A completed
 * multipart upload appears atomically, so a blob is whole or absent.
 */
export class S3Storage implements Storage {
  readonly kind = 's3' as const;
  readonly direct: DirectAccess;
  private bucketReady?: Promise<void>;
  private partCopyUnsupported = false;

  /**
   * @param presigner signs the URLs clients use (its endpoint is the one clients reach, which may
   *   differ from the one Ferry uses, e.g. `localhost` outside a compose network); default `s3`
   */
  constructor(
    private readonly s3: S3Client,
    private readonly options: S3StorageOptions,
    presigner: S3Client = s3,
  ) {
    this.direct = new S3DirectAccess(this, presigner, options.bucket);
    if (!Number.isInteger(options.partBytes) || options.partBytes < 1 || options.partBytes > S3_LIMITS.maxPartBytes) {
      throw new RangeError(`S3 part size ${options.partBytes} is outside 1..${S3_LIMITS.maxPartBytes}`);
    }
  }

  get partBytes(): number {
    return this.options.partBytes;
  }

  private get bucket(): string {
    return this.options.bucket;
  }

  private ready(): Promise<void> {
    this.bucketReady ??= this.ensureBucket().catch((err: unknown) => {
      this.bucketReady = undefined;
      throw err;
    });
    return this.bucketReady;
  }

  private async ensureBucket(): Promise<void> {
    try {
      await this.s3.send(new aws.HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (!this.options.createBucket || !isNotFound(err)) throw err;
      await this.s3.send(new aws.CreateBucketCommand({ Bucket: this.bucket })).catch((e: unknown) => {
        if (!(e instanceof aws.S3ServiceException && /BucketAlready/.test(e.name))) throw e;
      });
    }
  }

  static stagingPrefix(uploadId: string): string {
    assertUploadId(uploadId);
    return `staging/${uploadId}/`;
  }

  /** Part `index`, as the writer of lease fence `fence` wrote it (0: no fence, as clients' parts). */
  static partKey(uploadId: string, index: number, fence = 0): string {
    return `${S3Storage.stagingPrefix(uploadId)}${String(index).padStart(8, '0')}${fenceSuffix(fence)}`;
  }

  /** Tail piece of part `index` holding the bytes from `start` (an offset in the whole object) on. */
  static tailKey(uploadId: string, index: number, start: number, fence = 0): string {
    return `${S3Storage.stagingPrefix(uploadId)}tail-${String(index).padStart(8, '0')}-${String(start).padStart(15, '0')}${fenceSuffix(fence)}`;
  }

  static blobKey(sha256: string): string {
    assertSha256(sha256);
    return `blobs/sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  /** What the bucket holds of a staging object (see layoutOf). */
  private async layout(uploadId: string): Promise<Layout> {
    await this.ready();
    const prefix = S3Storage.stagingPrefix(uploadId);
    const objects: StoredObject[] = [];
    for await (const o of this.list(prefix)) objects.push(o);
    return layoutOf(prefix, objects);
  }

  async openStaging(uploadId: string, size: number, fence = 0): Promise<StagingFile> {
    const { parts, tail, stray } = await this.layout(uploadId);
    const staged = sum(parts) + sum(tail);
    if (staged < size) throw new InternalError(`upload ${uploadId}: ${size} bytes committed but only ${staged} staged`);
    // the parts wholly within the committed size stay
    let keep = 0;
    let at = 0;
    while (keep < parts.length && at + parts[keep].size <= size) at += parts[keep++].size;
    // A short last part (of a final sync) must not end up in the middle of the object: its bytes
    // begin the next part again.
    if (at === size && keep > 0 && parts[keep - 1].size < this.partBytes) at -= parts[--keep].size;
    if (at === size) {
      // nothing from part `keep` on was committed (a writer died before its commit)
      await this.deleteKeys([...keysOf(parts.slice(keep)), ...keysOf(tail), ...stray]);
      return new S3StagingFile(this, uploadId, fence, keep, size);
    }
    // The committed bytes of part `keep` [at, size) begin the part the writer fills next.
    const prefix = await this.readSegments([...parts.slice(keep), ...tail], at, at, size);
    if (keep < parts.length) {
      // They lie in a part (a short last part, or a part of a writer with another
      // FERRY_S3_PART_SIZE): they become its tail piece, and the part goes, so that the pieces the
      // writer adds count (tail pieces of a part in the bucket are superseded). In this order: until
      // the part is deleted it holds them, and the piece is ignored.
      await this.deleteKeys([...keysOf(parts.slice(keep + 1)), ...keysOf(tail), ...stray]);
      const piece = S3Storage.tailKey(uploadId, keep, at, fence);
      await this.putObject(piece, prefix);
      await this.deleteKeys([parts[keep].key]);
      return new S3StagingFile(this, uploadId, fence, keep, size, prefix, [piece]);
    }
    // They lie in tail pieces: those beginning at or past the committed size were never committed.
    const kept = tail.filter((p) => p.start < size);
    await this.deleteKeys([...keysOf(tail.filter((p) => p.start >= size)), ...stray]);
    const last = kept[kept.length - 1];
    if (last.start + last.size > size) {
      // A committed size is where a sync ended, so only a writer that lost its lease can have
      // written a piece across it: cut to the committed size (S3 replaces an object atomically).
      await this.putObject(last.key, prefix.subarray(last.start - at));
    }
    return new S3StagingFile(this, uploadId, fence, keep, size, prefix, keysOf(kept));
  }

  async openStagingForParts(uploadId: string, size: number): Promise<StagingFile> {
    throw new InternalError(
      `upload ${uploadId} (${size} bytes): S3 storage takes multipart parts as objects PUT straight to the bucket; parts cannot be written through Ferry`,
    );
  }

  async stagingSize(uploadId: string): Promise<number | undefined> {
    const { parts, tail } = await this.layout(uploadId);
    return parts.length + tail.length === 0 ? undefined : sum(parts) + sum(tail);
  }

  readStaging(uploadId: string, start: number, end: number): Readable {
    return Readable.from(this.readStaged(uploadId, start, end), { objectMode: false });
  }

  private async *readStaged(uploadId: string, start: number, end: number): AsyncGenerator<Buffer> {
    if (end <= start) return;
    const { parts, tail } = await this.layout(uploadId);
    const staged = sum(parts) + sum(tail);
    if (staged < end) throw new InternalError(`upload ${uploadId}: asked for bytes up to ${end} but only ${staged} are staged`);
    yield* this.streamSegments([...parts, ...tail], 0, start, end);
  }

  /** Streams `[start, end)` of consecutive segments, the first of which begins at `base`. */
  private async *streamSegments(segments: StoredObject[], base: number, start: number, end: number): AsyncGenerator<Buffer> {
    let at = base;
    for (const segment of segments) {
      const from = Math.max(start, at);
      const to = Math.min(end, at + segment.size);
      if (from < to) yield* this.getRange(segment.key, from - at, to - at, 1024 * 1024);
      at += segment.size;
      if (at >= end) return;
    }
    if (at < end) throw new InternalError(`asked for bytes up to ${end} but the staged segments end at ${at}`);
  }

  /** `[start, end)` of consecutive segments beginning at `base`, in memory (a part at most), read a few at a time. */
  private async readSegments(segments: StoredObject[], base: number, start: number, end: number): Promise<Buffer> {
    const out = Buffer.allocUnsafeSlow(end - start);
    const reads: (() => Promise<void>)[] = [];
    let at = base;
    for (const segment of segments) {
      const from = Math.max(start, at);
      const to = Math.min(end, at + segment.size);
      const segmentAt = at;
      if (from < to) {
        reads.push(async () => {
          let into = from - start;
          for await (const chunk of this.getRange(segment.key, from - segmentAt, to - segmentAt, to - from)) into += chunk.copy(out, into);
        });
      }
      at += segment.size;
    }
    if (at < end) throw new InternalError(`asked for bytes up to ${end} but the staged segments end at ${at}`);
    // (a slow stream leaves many small pieces: up to 8 GETs at a time)
    await Promise.all(
      Array.from({ length: Math.min(8, reads.length) }, async () => {
        for (let read = reads.shift(); read; read = reads.shift()) await read();
      }),
    );
    return out;
  }

  async deleteStaging(uploadId: string): Promise<void> {
    const keys: string[] = [];
    await this.ready();
    for await (const o of this.list(S3Storage.stagingPrefix(uploadId))) keys.push(o.key);
    await this.deleteKeys(keys);
  }

  async *listStaging(): AsyncIterable<StagingEntry> {
    await this.ready();
    let current: { uploadId: string; objects: StoredObject[] } | undefined;
    const entry = ({ uploadId, objects }: { uploadId: string; objects: StoredObject[] }): StagingEntry => {
      const { parts, tail } = layoutOf(S3Storage.stagingPrefix(uploadId), objects);
      // the staged size; the last change of any of its objects (a tail piece written is activity)
      return { uploadId, size: sum(parts) + sum(tail), modifiedMs: Math.max(0, ...objects.map((o) => o.modifiedMs)) };
    };
    // keys are listed in order, so the objects of one upload are adjacent
    for await (const o of this.list('staging/')) {
      const uploadId = o.key.slice('staging/'.length).split('/')[0];
      if (current && current.uploadId !== uploadId) yield entry(current);
      if (!current || current.uploadId !== uploadId) current = { uploadId, objects: [] };
      current.objects.push(o);
    }
    if (current) yield entry(current);
  }

  async publishStaging(uploadId: string, sha256: string): Promise<void> {
    const target = S3Storage.blobKey(sha256);
    if ((await this.blobSize(sha256)) !== undefined) {
      await this.deleteStaging(uploadId);
      return;
    }
    const { parts, tail, stray } = await this.layout(uploadId);
    if (parts.length + tail.length === 0) throw new NotFoundError(`no staged bytes for upload ${uploadId}`);
    if (parts.length + tail.length === 1) {
      const [only] = [...parts, ...tail];
      await this.s3.send(new aws.CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource: this.copySource(only.key) }));
    } else {
      await this.assemble(target, parts, tail);
    }
    await this.deleteKeys([...keysOf(parts), ...keysOf(tail), ...stray]); // listed once, above
  }

  /**
   * Joins parts into one object by a multipart upload: server-side copies where the store can. Tail
   * pieces (an upload published without a final sync) are its last part: one copied, several
   * streamed through Ferry as one (they hold less than a part).
   */
  private async assemble(target: string, parts: StagedPart[], tail: TailPiece[]): Promise<void> {
    const count = parts.length + (tail.length > 0 ? 1 : 0);
    if (count > S3_LIMITS.maxParts) throw new InternalError(`${count} parts: more than S3's ${S3_LIMITS.maxParts}`);
    const created = await this.s3.send(new aws.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: target }));
    const UploadId = created.UploadId as string;
    const sources: ((PartNumber: number) => Promise<string>)[] = parts.map((part) => (n) => this.copyPart(target, UploadId, n, part));
    if (tail.length === 1) sources.push((n) => this.copyPart(target, UploadId, n, tail[0]));
    if (tail.length > 1) {
      const [first] = tail;
      const length = sum(tail);
      const body = () => Readable.from(this.streamSegments(tail, first.start, first.start, first.start + length), { objectMode: false });
      sources.push((n) => this.uploadPart(target, UploadId, n, body(), length));
    }
    try {
      // a few parts at a time: copies are server-side, but each one is a round trip (or, streamed, a transfer)
      const done: { PartNumber: number; ETag: string }[] = new Array(sources.length);
      let next = 0;
      const copier = async () => {
        for (let i = next++; i < sources.length; i = next++) done[i] = { PartNumber: i + 1, ETag: await sources[i](i + 1) };
      };
      await Promise.all(Array.from({ length: Math.min(4, sources.length) }, copier));
      await this.s3.send(
        new aws.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: target, UploadId, MultipartUpload: { Parts: done } }),
      );
    } catch (err) {
      await this.s3.send(new aws.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: target, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  private async copyPart(target: string, UploadId: string, PartNumber: number, part: StoredObject): Promise<string> {
    if (!this.partCopyUnsupported) {
      try {
        const r = await this.s3.send(
          new aws.UploadPartCopyCommand({ Bucket: this.bucket, Key: target, UploadId, PartNumber, CopySource: this.copySource(part.key) }),
        );
        return r.CopyPartResult?.ETag as string;
      } catch (err) {
        if (!(err instanceof aws.S3ServiceException && err.name === 'NotImplemented')) throw err;
        this.partCopyUnsupported = true; // e.g. s3rver: stream the parts through Ferry instead
      }
    }
    const body = await this.s3.send(new aws.GetObjectCommand({ Bucket: this.bucket, Key: part.key }));
    return this.uploadPart(target, UploadId, PartNumber, body.Body as Readable, part.size);
  }

  /** Uploads one part of a multipart upload from `body` (exactly `length` bytes). */
  private async uploadPart(target: string, UploadId: string, PartNumber: number, body: Readable, length: number): Promise<string> {
    const r = await this.s3.send(
      new aws.UploadPartCommand({ Bucket: this.bucket, Key: target, UploadId, PartNumber, ContentLength: length, Body: body }),
    );
    return r.ETag as string;
  }

  private copySource(key: string): string {
    return `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async putBlob(data: Buffer, sha256: string): Promise<void> {
    const key = S3Storage.blobKey(sha256);
    if (sha256 === SHA256_EMPTY || (await this.blobSize(sha256)) !== undefined) return;
    // a PUT is atomic: the blob appears whole or not at all
    await this.s3.send(new aws.PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length }));
  }

  async blobSize(sha256: string): Promise<number | undefined> {
    const key = S3Storage.blobKey(sha256);
    if (sha256 === SHA256_EMPTY) return 0;
    await this.ready();
    try {
      const head = await this.s3.send(new aws.HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** HEADs, HEAD_CONCURRENCY at a time. */
  async blobSizes(sha256s: readonly string[]): Promise<(number | undefined)[]> {
    const out = new Array<number | undefined>(sha256s.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(HEAD_CONCURRENCY, sha256s.length) }, async () => {
        for (let i = next++; i < sha256s.length; i = next++) out[i] = await this.blobSize(sha256s[i]);
      }),
    );
    return out;
  }

  readBlob(sha256: string, start: number, end: number, chunkSize = 2 * 1024 * 1024): Readable {
    const key = S3Storage.blobKey(sha256);
    if (sha256 === SHA256_EMPTY || end <= start) return Readable.from([]);
    return Readable.from(this.getRange(key, start, end, chunkSize), { objectMode: false });
  }

  /** Streams `[start, end)` of an object in chunks of `chunkSize` (the last one shorter). */
  private async *getRange(key: string, start: number, end: number, chunkSize: number): AsyncGenerator<Buffer> {
    await this.ready();
    let got: S3Sdk.GetObjectCommandOutput;
    try {
      got = await this.s3.send(new aws.GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end - 1}` }));
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`no object ${key}`);
      throw err;
    }
    yield* rechunk(got.Body as AsyncIterable<Buffer>, chunkSize, end - start, key);
  }

  async deleteBlob(sha256: string): Promise<void> {
    const key = S3Storage.blobKey(sha256);
    await this.ready();
    await this.s3.send(new aws.DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async check(): Promise<void> {
    await this.ready();
    await this.s3.send(new aws.HeadBucketCommand({ Bucket: this.bucket })); // every time: the store may have gone since
  }

  /**
   * Server-side copies of the staging object `from` (its parts and tail pieces) as the staging
   * object `to`, a new staging id (each object ≤ 5 GiB: one CopyObject). Returns the size copied, or
   * undefined if `from` had nothing staged.
   */
  async copyParts(from: string, to: string): Promise<number | undefined> {
    const { parts, tail } = await this.layout(from);
    const fromPrefix = S3Storage.stagingPrefix(from);
    const toPrefix = S3Storage.stagingPrefix(to);
    for (const o of [...parts, ...tail]) {
      await this.s3.send(
        new aws.CopyObjectCommand({
          Bucket: this.bucket,
          Key: toPrefix + o.key.slice(fromPrefix.length),
          CopySource: this.copySource(o.key),
        }),
      );
    }
    return parts.length + tail.length === 0 ? undefined : sum(parts) + sum(tail);
  }

  async putEmptyBlob(): Promise<void> {
    await this.ready();
    await this.s3.send(
      new aws.PutObjectCommand({ Bucket: this.bucket, Key: S3Storage.blobKey(SHA256_EMPTY), Body: Buffer.alloc(0), ContentLength: 0 }),
    );
  }

  /** Size and ETag of an object, or undefined if absent. */
  async head(key: string): Promise<{ size: number; etag: string } | undefined> {
    await this.ready();
    try {
      const head = await this.s3.send(new aws.HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: head.ContentLength ?? 0, etag: (head.ETag ?? '').replace(/"/g, '') };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Streams a whole object. */
  read(key: string, size: number): AsyncGenerator<Buffer> {
    return this.getRange(key, 0, size, 1024 * 1024);
  }

  /** Writes a tail piece of staging part `index` (see S3StagingFile.sync); returns its key. */
  async putTailPiece(uploadId: string, fence: number, index: number, start: number, data: Buffer): Promise<string> {
    const key = S3Storage.tailKey(uploadId, index, start, fence);
    await this.putObject(key, data);
    return key;
  }

  /** Deletes staging objects by key (tail pieces superseded by their part). */
  async deleteStagingObjects(keys: string[]): Promise<void> {
    await this.deleteKeys(keys);
  }

  /** A whole object in one PUT: S3 shows it only once complete, and replaces an existing one atomically. */
  private async putObject(Key: string, data: Buffer): Promise<void> {
    await this.ready();
    await this.s3.send(new aws.PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.length }));
  }

  /** Writes one staging part (a whole object: durable once the PUT returns). */
  async putPart(uploadId: string, fence: number, index: number, data: Buffer): Promise<void> {
    await this.putObject(S3Storage.partKey(uploadId, index, fence), data);
  }

  private async *list(prefix: string): AsyncGenerator<StoredObject> {
    let token: string | undefined;
    do {
      const page = await this.s3.send(new aws.ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key, size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  private async deleteKeys(keys: string[]): Promise<void> {
    if (keys.length > 0) await this.ready();
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      await this.s3.send(
        new aws.DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
      );
    }
  }
}

/** Presigned URLs straight to the bucket (SigV4, query-string authentication). */
class S3DirectAccess implements DirectAccess {
  readonly maxPartBytes = S3_LIMITS.maxSingleObjectBytes;

  constructor(
    private readonly storage: S3Storage,
    private readonly presigner: S3Client,
    private readonly bucket: string,
  ) {}

  async stagingPartPutUrl(
    uploadId: string,
    index: number,
    o: { contentLength: number; contentType?: string; expiresInSeconds: number },
  ): Promise<{ url: string; headers: Record<string, string> }> {
    const command = new aws.PutObjectCommand({
      Bucket: this.bucket,
      Key: S3Storage.partKey(uploadId, index),
      ContentLength: o.contentLength,
      ContentType: o.contentType,
    });
    // Content-Length and Content-Type are signed: S3 refuses a body of another length
    const url = await awsPresigner.getSignedUrl(this.presigner, command, {
      expiresIn: o.expiresInSeconds,
      signableHeaders: new Set(o.contentType ? ['content-type', 'content-length'] : ['content-length']),
    });
    // every HTTP client sends Content-Length itself; only Content-Type is the caller's to send
    return { url, headers: o.contentType ? { 'Content-Type': o.contentType } : {} };
  }

  async stagingPart(uploadId: string, index: number): Promise<{ size: number; md5: string } | undefined> {
    const key = S3Storage.partKey(uploadId, index);
    const head = await this.storage.head(key);
    if (!head) return undefined;
    // The ETag of an object written by one PUT is its MD5, unless the bucket encrypts with KMS or
    // customer keys: then the bytes are read back to hash them.
    if (/^[0-9a-f]{32}$/.test(head.etag)) return { size: head.size, md5: head.etag };
    const md5 = createHash('md5');
    for await (const chunk of this.storage.read(key, head.size)) md5.update(chunk);
    return { size: head.size, md5: md5.digest('hex') };
  }

  snapshotStaging(from: string, to: string): Promise<number | undefined> {
    return this.storage.copyParts(from, to);
  }

  async blobGetUrl(sha256: string, o: { expiresInSeconds: number; contentType?: string; fileName?: string }): Promise<string> {
    // the empty blob exists without being stored; a URL needs an object to name
    if (sha256 === SHA256_EMPTY) await this.storage.putEmptyBlob();
    const command = new aws.GetObjectCommand({
      Bucket: this.bucket,
      Key: S3Storage.blobKey(sha256),
      ResponseContentType: o.contentType,
      ResponseContentDisposition: o.fileName ? contentDisposition(o.fileName) : undefined,
    });
    return awsPresigner.getSignedUrl(this.presigner, command, { expiresIn: o.expiresInSeconds });
  }
}

/** `attachment` with the file name, ASCII fallback plus RFC 5987 UTF-8 form. */
function contentDisposition(fileName: string): string {
  const ascii = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

/** An object as listed. */
interface StoredObject {
  key: string;
  size: number;
  modifiedMs: number;
}

interface StagedPart extends StoredObject {
  index: number;
}

interface TailPiece extends StoredObject {
  /** The part it begins or continues. */
  index: number;
  /** Where its bytes begin in the whole object. */
  start: number;
}

/** What a staging object consists of: whole parts, then tail pieces; `stray`: stale objects. */
interface Layout {
  parts: StagedPart[];
  tail: TailPiece[];
  stray: string[];
}

const PART_NAME = /^(\d+)(?:\.f(\d+))?$/;
const TAIL_NAME = /^tail-(\d+)-(\d+)(?:\.f(\d+))?$/;

/**
 * Staging objects written under a lease carry its fence (`.f<fence>`): a writer that lost its lease
 * without knowing it (a paused process, a PUT stuck in the network) can still land a PUT after its
 * successor began, and S3 has no lock to stop it; its object then has a lower fence than the
 * successor's of the same part or piece, and the higher one is read (the lower one is stray).
 */
function fenceSuffix(fence: number): string {
  return fence > 0 ? `.f${fence}` : '';
}

/**
 * Reads a staging object from the objects under its prefix: the parts from index 0 without a gap,
 * then the tail pieces of the next part that follow each other from where the parts end. Of two
 * objects of one part, or two pieces from one start, the one of the higher fence counts (see
 * fenceSuffix). Anything else is stray: the lower-fenced twin, a part after a gap, pieces of a part
 * that is there whole (superseded: its writer died between writing the part and deleting them),
 * pieces after a gap or of a later part, and names Ferry does not write.
 */
function layoutOf(prefix: string, objects: StoredObject[]): Layout {
  const found = new Map<number, StagedPart & { fence: number }>();
  const pieces = new Map<number, Map<number, TailPiece & { fence: number }>>();
  const stray: string[] = [];
  /** Keeps the higher-fenced of `o` and what `map` holds at `at`; the other is stray. */
  const keep = <T extends { key: string; fence: number }>(map: Map<number, T>, at: number, o: T) => {
    const held = map.get(at);
    if (held && held.fence >= o.fence) {
      stray.push(o.key);
      return;
    }
    if (held) stray.push(held.key);
    map.set(at, o);
  };
  for (const o of objects) {
    const name = o.key.slice(prefix.length);
    const tail = TAIL_NAME.exec(name);
    const part = PART_NAME.exec(name);
    if (tail && o.size > 0) {
      const piece = { ...o, index: Number(tail[1]), start: Number(tail[2]), fence: Number(tail[3] ?? 0) };
      if (!pieces.has(piece.index)) pieces.set(piece.index, new Map());
      keep(pieces.get(piece.index) as Map<number, TailPiece & { fence: number }>, piece.start, piece);
    } else if (part) {
      keep(found, Number(part[1]), { ...o, index: Number(part[1]), fence: Number(part[2] ?? 0) });
    } else {
      stray.push(o.key);
    }
  }
  const parts: StagedPart[] = [];
  let end = 0;
  for (let part = found.get(0); part; part = found.get(parts.length)) {
    parts.push(part);
    found.delete(part.index);
    end += part.size;
  }
  const tail: TailPiece[] = [];
  const next = pieces.get(parts.length);
  for (let piece = next?.get(end); piece; piece = next?.get(end)) {
    tail.push(piece);
    next?.delete(piece.start);
    end += piece.size;
  }
  for (const p of found.values()) stray.push(p.key);
  for (const byStart of pieces.values()) for (const p of byStart.values()) stray.push(p.key);
  return { parts, tail, stray };
}

/**
 * A sequential staging object on S3: bytes are appended, whole parts are PUT as they fill (at most
 * two at a time, so memory per upload stays under three parts); a sync writes what the part being
 * filled holds beyond its earlier tail pieces as one more, and the final sync writes it as the last
 * (short) part.
 */
class S3StagingFile implements StagingFile {
  /** The part being filled (copied in: callers own their buffers again once a write resolves). */
  private part?: Buffer;
  private partLength = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure?: unknown;
  /** The last (short) part is written: nothing more may be appended. */
  private sealed = false;
  /** Where the bytes in the bucket end, contiguously from the start (the durable size). */
  private durable: number;
  /** Parts written out of order, waiting for their predecessors: index → where each ends. */
  private readonly doneEarly = new Map<number, number>();
  private nextDurableIndex: number;
  /** Where the part being filled begins. */
  private partStart: number;
  /** Where the tail pieces of the part being filled end (partStart when it has none). */
  private tailEnd: number;
  /** Keys of the tail pieces of parts not yet in the bucket whole, by part: deleted once it is. */
  private readonly tailKeys = new Map<number, string[]>();
  /** Deletions of superseded tail pieces under way (close waits for them). */
  private readonly cleanups = new Set<Promise<void>>();
  /** What the last sync answered. */
  private answered: number;
  /** Syncs run one after another: tail pieces are written in order. */
  private syncing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly storage: S3Storage,
    readonly uploadId: string,
    /** The fence of the writer's lease, in the keys of what it PUTs (see fenceSuffix). */
    private readonly fence: number,
    private nextIndex: number,
    /** Where the next write must start. */
    private end: number,
    /** Committed bytes that begin the part to fill (they are in the bucket as its tail pieces). */
    prefix?: Buffer,
    /** The keys of those tail pieces. */
    tailKeys: string[] = [],
  ) {
    this.durable = end;
    this.answered = end;
    this.nextDurableIndex = nextIndex;
    this.partStart = end - (prefix?.length ?? 0);
    this.tailEnd = end;
    if (tailKeys.length > 0) this.tailKeys.set(nextIndex, [...tailKeys]);
    if (prefix?.length) {
      // one byte more than the prefix at least, so that a write always has room to copy into
      this.part = Buffer.allocUnsafeSlow(Math.max(storage.partBytes, prefix.length + 1));
      prefix.copy(this.part);
      this.partLength = prefix.length;
    }
  }

  async write(data: Buffer | readonly Buffer[], position: number, guard?: () => void): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.sealed) throw new InternalError(`upload ${this.uploadId}: its last part is written; nothing can be appended`);
    if (position !== this.end)
      throw new InternalError(`upload ${this.uploadId}: S3 staging is written in order (write at ${position}, end at ${this.end})`);
    guard?.();
    for (const buffer of Buffer.isBuffer(data) ? [data] : data) {
      let from = 0;
      while (from < buffer.length) {
        this.part ??= Buffer.allocUnsafeSlow(this.storage.partBytes);
        const n = buffer.copy(this.part, this.partLength, from);
        this.partLength += n;
        from += n;
        this.uploadIfFull();
      }
      this.end += buffer.length;
    }
    // backpressure: at most a few parts in the air (memory per upload stays bounded)
    while (this.inFlight.size > 2) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
  }

  /** Hands the part being filled to the bucket once it is full. */
  private uploadIfFull(): void {
    if (!this.part || this.partLength < this.part.length) return;
    // the last part may be short, so only a full part beyond the limit is certainly too many
    if (this.nextIndex + 1 >= S3_LIMITS.maxParts) {
      throw new ResourceExhaustedError(
        `upload ${this.uploadId}: larger than S3's ${S3_LIMITS.maxParts} parts of ${this.storage.partBytes} bytes (FERRY_S3_PART_SIZE) allow`,
      );
    }
    const full = this.part;
    this.part = undefined;
    this.partLength = 0;
    this.upload(full);
  }

  private upload(part: Buffer): void {
    const index = this.nextIndex++;
    const partEnd = this.partStart + part.length;
    this.partStart = partEnd;
    this.tailEnd = partEnd;
    const run: Promise<void> = this.storage.putPart(this.uploadId, this.fence, index, part).then(
      () => {
        this.inFlight.delete(run);
        this.doneEarly.set(index, partEnd);
        while (this.doneEarly.has(this.nextDurableIndex)) {
          this.durable = Math.max(this.durable, this.doneEarly.get(this.nextDurableIndex) as number);
          this.doneEarly.delete(this.nextDurableIndex++);
        }
        // the part supersedes its tail pieces
        const superseded = this.tailKeys.get(index);
        this.tailKeys.delete(index);
        if (superseded) this.deleteLater(superseded);
      },
      (err: unknown) => {
        this.inFlight.delete(run);
        this.failure ??= err;
      },
    );
    this.inFlight.add(run);
  }

  /** Deletes superseded tail pieces, not waiting: left behind by a crash, they are never read. */
  private deleteLater(keys: string[]): void {
    const run: Promise<void> = this.storage
      .deleteStagingObjects(keys)
      .catch(() => undefined)
      .finally(() => this.cleanups.delete(run));
    this.cleanups.add(run);
  }

  sync(final = false): Promise<number> {
    return this.serially(() => (final ? this.finish() : this.persist(false)));
  }

  syncAll(): Promise<number> {
    return this.serially(() => this.persist(true));
  }

  private serially(step: () => Promise<number>): Promise<number> {
    const run = this.syncing.then(step);
    this.syncing = run.catch(() => undefined);
    return run;
  }

  /** Writes what the part being filled holds as the last part. */
  private async finish(): Promise<number> {
    if (!this.sealed && (this.partLength > 0 || this.end === 0)) {
      this.upload((this.part ?? Buffer.alloc(0)).subarray(0, this.partLength));
      this.part = undefined;
      this.partLength = 0;
      this.sealed = true;
    }
    // only parts written completely, without a gap before them, count
    await Promise.all([...this.inFlight]);
    if (this.failure !== undefined) throw this.failure;
    return this.answer();
  }

  /**
   * Makes durable what was written before the call: waits for the parts on their way, then writes
   * the rest as a tail piece, unless (`all` false) a whole part reached the bucket since the last
   * answer: then that is the answer, and the rest waits for the next sync.
   */
  private async persist(all: boolean): Promise<number> {
    const target = this.end;
    for (;;) {
      await Promise.all([...this.inFlight]);
      if (this.failure !== undefined) throw this.failure;
      if (this.sealed || this.durable >= target) break;
      if (!all && this.durable > this.answered) break;
      // Writes go on meanwhile: a part may have filled and be on its way since. A tail piece counts
      // only once every part before it is in the bucket, so wait for that part too.
      if (this.durable < this.partStart) continue;
      await this.putTailPiece();
    }
    return this.answer();
  }

  private answer(): number {
    this.answered = Math.max(this.answered, this.durable);
    return this.durable;
  }

  /** PUTs the bytes of the part being filled that no tail piece holds yet, as one more piece. */
  private async putTailPiece(): Promise<void> {
    const index = this.nextIndex;
    const start = this.tailEnd;
    const end = this.partStart + this.partLength;
    // (writes made while it is PUT go past `end`; the part may fill and be PUT meanwhile, from the
    // same buffer, which nothing changes once written)
    const bytes = (this.part as Buffer).subarray(start - this.partStart, this.partLength);
    let key: string;
    try {
      key = await this.storage.putTailPiece(this.uploadId, this.fence, index, start, bytes);
    } catch (err) {
      this.failure ??= err;
      throw err;
    }
    // every part before it was in the bucket when it was sent, and so were the pieces before it
    this.durable = Math.max(this.durable, end);
    if (this.nextDurableIndex > index) {
      this.deleteLater([key]); // its part reached the bucket meanwhile
      return;
    }
    this.tailKeys.set(index, [...(this.tailKeys.get(index) ?? []), key]);
    if (this.nextIndex === index) this.tailEnd = end;
  }

  async close(): Promise<void> {
    // what was not synced is dropped; parts still being written finish (past the committed size,
    // they are cut when the upload is opened again), and so do deletions of superseded pieces
    await this.syncing;
    await Promise.allSettled([...this.inFlight]);
    await Promise.allSettled([...this.cleanups]);
    this.part = undefined;
    this.partLength = 0;
  }
}

function sum(objects: StoredObject[]): number {
  return objects.reduce((n, o) => n + o.size, 0);
}

function keysOf(objects: StoredObject[]): string[] {
  return objects.map((o) => o.key);
}

function isNotFound(err: unknown): boolean {
  if (!(err instanceof aws.S3ServiceException)) return false;
  return err.$metadata.httpStatusCode === 404 || err.name === 'NotFound' || err.name === 'NoSuchKey' || err.name === 'NoSuchBucket';
}

/** Re-cuts a byte stream into chunks of exactly `size` (the last one shorter), checking its length. */
async function* rechunk(source: AsyncIterable<Buffer>, size: number, expected: number, what: string): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let total = 0;
  for await (const piece of source) {
    let chunk = piece;
    total += chunk.length;
    while (heldBytes + chunk.length >= size) {
      const take = size - heldBytes;
      held.push(chunk.subarray(0, take));
      yield held.length === 1 ? held[0] : Buffer.concat(held, size);
      held = [];
      heldBytes = 0;
      chunk = chunk.subarray(take);
    }
    if (chunk.length > 0) {
      held.push(chunk);
      heldBytes += chunk.length;
    }
  }
  if (heldBytes > 0) yield held.length === 1 ? held[0] : Buffer.concat(held, heldBytes);
  if (total !== expected) throw new InternalError(`${what}: read ${total} bytes, expected ${expected}`);
}
