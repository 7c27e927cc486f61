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
  /** Size of staging parts: a sequential upload's frequent commits advance by whole parts (see syncAll for the rest). */
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
 *   staging/<uploadId>/<part index, 8 digits>   an upload in progress, as part objects (written by
 *                                                Ferry: `partBytes` each, the last one shorter;
 *                                                multipart parts: PUT by clients, the client's size)
 *   staging/<uploadId>/tail-<part index>         the beginning of the part being filled, as far as
 *                                                the last sync (valid while that part is absent)
 *   blobs/sha256/<ab>/<sha256>                   published content, one object per digest
 *
 * A sequential upload (ByteStream, GCS, an object PUT) fills a part in memory and PUTs it when full.
 * `sync()` makes the whole parts durable (the writer's frequent commits: no extra request);
 * `syncAll()`, when a client asks for what is persisted (a GCS flush) or a stream stops, also PUTs
 * what the part being filled holds so far as the tail object (as tusd's S3 store keeps an
 * incomplete part), which the part supersedes once it is whole (the tail is then deleted; a tail
 * left behind by a crash is recognised as superseded and removed when the upload is opened
 * again). So what a client is told is persisted is never held back to a part boundary. Each part
 * is its own object, so a resumed upload can read its committed prefix back (the parts of an
 * unfinished S3 multipart upload cannot be read). Publishing assembles the
 * parts into the blob server-side (CopyObject for one part, UploadPartCopy into a multipart upload
 * for more) and falls back to streaming the parts through Ferry only where the store lacks
 * UploadPartCopy. A completed multipart upload appears atomically, so a blob is whole or absent.
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

  static partKey(uploadId: string, index: number): string {
    return `${S3Storage.stagingPrefix(uploadId)}${String(index).padStart(8, '0')}`;
  }

  /** The beginning of part `index`, made durable by a sync before the part was whole. */
  static tailKey(uploadId: string, index: number): string {
    return `${S3Storage.stagingPrefix(uploadId)}tail-${String(index).padStart(8, '0')}`;
  }

  static blobKey(sha256: string): string {
    assertSha256(sha256);
    return `blobs/sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  /**
   * The durable parts of a staging object, in order: only the run without gaps from index 0 counts,
   * followed by the tail of the first missing part if there is one (the last element then). Tails of
   * parts that exist (superseded) and anything else are `stray`.
   */
  private async parts(uploadId: string): Promise<{ parts: StagedPart[]; stray: string[] }> {
    await this.ready();
    const found = new Map<number, StagedPart>();
    const tails = new Map<number, StagedPart>();
    const stray: string[] = [];
    const prefix = S3Storage.stagingPrefix(uploadId);
    for await (const o of this.list(prefix)) {
      const name = o.key.slice(prefix.length);
      const tail = name.startsWith('tail-');
      const index = Number(tail ? name.slice('tail-'.length) : name);
      if (!Number.isInteger(index) || index < 0) stray.push(o.key);
      else (tail ? tails : found).set(index, { index, key: o.key, size: o.size, modifiedMs: o.modifiedMs });
    }
    const parts: StagedPart[] = [];
    for (let i = 0; found.has(i); i++) {
      parts.push(found.get(i) as StagedPart);
      found.delete(i);
    }
    const tail = tails.get(parts.length);
    if (tail) {
      parts.push(tail);
      tails.delete(parts.length - 1);
    }
    stray.push(...[...found.values(), ...tails.values()].map((p) => p.key));
    return { parts, stray };
  }

  async openStaging(uploadId: string, size: number): Promise<StagingFile> {
    const { parts, stray } = await this.parts(uploadId);
    const staged = sum(parts);
    if (staged < size) throw new InternalError(`upload ${uploadId}: ${size} bytes committed but only ${staged} staged`);
    // the parts wholly within the committed size stay
    let keep = 0;
    let at = 0;
    while (keep < parts.length && at + parts[keep].size <= size) at += parts[keep++].size;
    // A short last part (the tail of a final sync) must not end up in the middle of the object, and
    // a committed size may fall inside a part (its writer used another FERRY_S3_PART_SIZE): then
    // that part's committed bytes are read back and begin the next part, written again with what
    // follows. The old part keeps them durable until it is replaced.
    if (at === size && keep > 0 && parts[keep - 1].size < this.partBytes) at -= parts[--keep].size;
    const prefix = at < size ? await this.readAll(parts[keep].key, size - at) : undefined;
    // parts past the committed size were never committed (a writer died before its commit)
    await this.deleteKeys([...parts.slice(prefix ? keep + 1 : keep).map((p) => p.key), ...stray]);
    return new S3StagingFile(this, uploadId, keep, size, prefix);
  }

  async openStagingForParts(uploadId: string, size: number): Promise<StagingFile> {
    throw new InternalError(
      `upload ${uploadId} (${size} bytes): S3 storage takes multipart parts as objects PUT straight to the bucket; parts cannot be written through Ferry`,
    );
  }

  async stagingSize(uploadId: string): Promise<number | undefined> {
    const { parts } = await this.parts(uploadId);
    return parts.length === 0 ? undefined : sum(parts);
  }

  readStaging(uploadId: string, start: number, end: number): Readable {
    return Readable.from(this.readParts(uploadId, start, end), { objectMode: false });
  }

  private async *readParts(uploadId: string, start: number, end: number): AsyncGenerator<Buffer> {
    if (end <= start) return;
    const { parts } = await this.parts(uploadId);
    let at = 0;
    for (const part of parts) {
      const from = Math.max(start, at);
      const to = Math.min(end, at + part.size);
      if (from < to) yield* this.getRange(part.key, from - at, to - at, 1024 * 1024);
      at += part.size;
      if (at >= end) return;
    }
    if (at < end) throw new InternalError(`upload ${uploadId}: asked for bytes up to ${end} but only ${at} are staged`);
  }

  async deleteStaging(uploadId: string): Promise<void> {
    const keys: string[] = [];
    await this.ready();
    for await (const o of this.list(S3Storage.stagingPrefix(uploadId))) keys.push(o.key);
    await this.deleteKeys(keys);
  }

  async *listStaging(): AsyncIterable<StagingEntry> {
    await this.ready();
    let current: StagingEntry | undefined;
    // keys are listed in order, so the parts of one upload are adjacent
    for await (const o of this.list('staging/')) {
      const uploadId = o.key.slice('staging/'.length).split('/')[0];
      if (current && current.uploadId !== uploadId) yield current;
      if (!current || current.uploadId !== uploadId) current = { uploadId, size: 0, modifiedMs: 0 };
      current.size += o.size;
      current.modifiedMs = Math.max(current.modifiedMs, o.modifiedMs);
    }
    if (current) yield current;
  }

  async publishStaging(uploadId: string, sha256: string): Promise<void> {
    const target = S3Storage.blobKey(sha256);
    if ((await this.blobSize(sha256)) !== undefined) {
      await this.deleteStaging(uploadId);
      return;
    }
    const { parts, stray } = await this.parts(uploadId);
    if (parts.length === 0) throw new NotFoundError(`no staged bytes for upload ${uploadId}`);
    if (parts.length === 1) {
      await this.s3.send(new aws.CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource: this.copySource(parts[0].key) }));
    } else {
      await this.assemble(target, parts);
    }
    await this.deleteKeys([...parts.map((p) => p.key), ...stray]); // listed once, above
  }

  /** Joins parts into one object by a multipart upload: server-side copies where the store can. */
  private async assemble(target: string, parts: StagedPart[]): Promise<void> {
    if (parts.length > S3_LIMITS.maxParts) throw new InternalError(`${parts.length} parts: more than S3's ${S3_LIMITS.maxParts}`);
    const created = await this.s3.send(new aws.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: target }));
    const UploadId = created.UploadId as string;
    try {
      // a few parts at a time: copies are server-side, but each one is a round trip (or, streamed, a transfer)
      const done: { PartNumber: number; ETag: string }[] = new Array(parts.length);
      let next = 0;
      const copier = async () => {
        for (let i = next++; i < parts.length; i = next++) {
          done[i] = { PartNumber: i + 1, ETag: await this.copyPart(target, UploadId, i + 1, parts[i]) };
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, parts.length) }, copier));
      await this.s3.send(
        new aws.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: target, UploadId, MultipartUpload: { Parts: done } }),
      );
    } catch (err) {
      await this.s3.send(new aws.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: target, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  private async copyPart(target: string, UploadId: string, PartNumber: number, part: StagedPart): Promise<string> {
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
    const r = await this.s3.send(
      new aws.UploadPartCommand({
        Bucket: this.bucket,
        Key: target,
        UploadId,
        PartNumber,
        ContentLength: part.size,
        Body: body.Body as Readable,
      }),
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
   * Server-side copies of the staging parts of `from` as those of `to`, a new staging id (each part
   * ≤ 5 GiB: one CopyObject). Returns the size copied, or undefined if `from` had no parts.
   */
  async copyParts(from: string, to: string): Promise<number | undefined> {
    const { parts } = await this.parts(from);
    for (const part of parts) {
      await this.s3.send(
        new aws.CopyObjectCommand({ Bucket: this.bucket, Key: S3Storage.partKey(to, part.index), CopySource: this.copySource(part.key) }),
      );
    }
    return parts.length === 0 ? undefined : sum(parts);
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

  /** The first `length` bytes of an object. */
  private async readAll(key: string, length: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.getRange(key, 0, length, length)) chunks.push(chunk);
    return Buffer.concat(chunks, length);
  }

  /** Streams a whole object. */
  read(key: string, size: number): AsyncGenerator<Buffer> {
    return this.getRange(key, 0, size, 1024 * 1024);
  }

  /** Writes the beginning of staging part `index` (see S3StagingFile.sync). */
  async putTail(uploadId: string, index: number, data: Buffer): Promise<void> {
    const Key = S3Storage.tailKey(uploadId, index);
    await this.s3.send(new aws.PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.length }));
  }

  async deleteTail(uploadId: string, index: number): Promise<void> {
    await this.s3.send(new aws.DeleteObjectCommand({ Bucket: this.bucket, Key: S3Storage.tailKey(uploadId, index) }));
  }

  /** Writes one staging part (a whole object: durable once the PUT returns). */
  async putPart(uploadId: string, index: number, data: Buffer): Promise<void> {
    await this.s3.send(
      new aws.PutObjectCommand({ Bucket: this.bucket, Key: S3Storage.partKey(uploadId, index), Body: data, ContentLength: data.length }),
    );
  }

  private async *list(prefix: string): AsyncGenerator<{ key: string; size: number; modifiedMs: number }> {
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

interface StagedPart {
  index: number;
  key: string;
  size: number;
  modifiedMs: number;
}

/**
 * A sequential staging object on S3: bytes are appended, whole parts are PUT as they fill (at most
 * two at a time, so memory per upload stays under three parts); a sync PUTs the part being filled,
 * as far as it goes, as the tail object, and the final sync writes it as the last (short) part.
 */
class S3StagingFile implements StagingFile {
  /** The part being filled (copied in: callers own their buffers again once a write resolves). */
  private part?: Buffer;
  private partLength = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure?: unknown;
  /** The last (short) part is written: nothing more may be appended. */
  private sealed = false;
  /** Where the parts written so far end, contiguously from the start (the durable size). */
  private durable: number;
  /** Parts written out of order, waiting for their predecessors: index → where each ends. */
  private readonly doneEarly = new Map<number, number>();
  private nextDurableIndex: number;
  /** Where the part being filled begins. */
  private partStart: number;
  /** Parts whose beginning was written as a tail object (deleted once the part is whole). */
  private readonly tails = new Set<number>();

  constructor(
    private readonly storage: S3Storage,
    readonly uploadId: string,
    private nextIndex: number,
    /** Where the next write must start. */
    private end: number,
    /** Committed bytes of a part to write again (they begin the next part). */
    prefix?: Buffer,
  ) {
    this.durable = end;
    this.nextDurableIndex = nextIndex;
    this.partStart = end - (prefix?.length ?? 0);
    if (prefix?.length) {
      // (read back from the part's tail, perhaps: delete it once the part is whole)
      this.tails.add(nextIndex);
      // one byte more than the prefix at least, so that a write always has room to copy into
      this.part = Buffer.allocUnsafeSlow(Math.max(storage.partBytes, prefix.length + 1));
      prefix.copy(this.part);
      this.partLength = prefix.length;
    }
  }

  get syncStep(): number {
    return this.storage.partBytes;
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
    const run: Promise<void> = this.storage.putPart(this.uploadId, index, part).then(
      () => {
        this.inFlight.delete(run);
        this.doneEarly.set(index, partEnd);
        while (this.doneEarly.has(this.nextDurableIndex)) {
          this.durable = Math.max(this.durable, this.doneEarly.get(this.nextDurableIndex) as number);
          this.doneEarly.delete(this.nextDurableIndex++);
        }
        // the part supersedes its tail (one left behind is removed when the upload is opened again)
        if (this.tails.delete(index)) void this.storage.deleteTail(this.uploadId, index).catch(() => undefined);
      },
      (err: unknown) => {
        this.inFlight.delete(run);
        this.failure ??= err;
      },
    );
    this.inFlight.add(run);
  }

  async sync(final = false): Promise<number> {
    if (final && !this.sealed && (this.partLength > 0 || this.end === 0)) {
      this.upload((this.part ?? Buffer.alloc(0)).subarray(0, this.partLength));
      this.part = undefined;
      this.partLength = 0;
      this.sealed = true;
    }
    // only parts written completely, without a gap before them, count
    await Promise.all([...this.inFlight]);
    if (this.failure !== undefined) throw this.failure;
    return this.durable;
  }

  /** sync(), then what the part being filled holds so far, as its tail object. */
  async syncAll(): Promise<number> {
    for (;;) {
      await this.sync();
      // Writes go on meanwhile: a part may have filled and be on its way since. The tail is only
      // worth anything once every part before it is in the bucket, so look again until they are.
      const { nextIndex: index, partStart: start, partLength: filled } = this;
      if (this.sealed || !this.part || filled === 0 || start + filled <= this.durable) return this.durable;
      if (this.durable < start) continue;
      // (bytes appended while it is PUT go past the range sent, which no write changes)
      this.tails.add(index);
      await this.storage.putTail(this.uploadId, index, this.part.subarray(0, filled));
      this.durable = Math.max(this.durable, start + filled);
      return this.durable;
    }
  }

  async close(): Promise<void> {
    // what was not synced is dropped; parts still being written finish (past the committed size,
    // they are cut when the upload is opened again)
    await Promise.allSettled([...this.inFlight]);
    this.part = undefined;
    this.partLength = 0;
  }
}

function sum(parts: StagedPart[]): number {
  return parts.reduce((n, p) => n + p.size, 0);
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
