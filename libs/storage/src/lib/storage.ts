import type { Readable } from 'node:stream';

/**
 * Where bytes live. Two areas:
 * - staging: one object per upload in progress, keyed by an upload id Ferry generated (never by a
 *   client-chosen name), written at explicit positions and made durable by `sync()`;
 * - blobs: published content, stored once per sha256 digest and immutable.
 *
 * Every backend passes the conformance suite in `storage.conformance.ts`.
 */
export interface StagingFile {
  readonly uploadId: string;
  /**
   * Writes `data` at `position`: one buffer, or several written back to back (a vectored write, so
   * that network chunks need not be copied into one buffer first). A staging object opened by
   * `openStaging` is written in order, each write starting where the previous one ended; one
   * opened for parts takes writes to disjoint ranges concurrently. `guard` runs right before the
   * bytes are written (after any wait for other writers) and may refuse by throwing. The caller
   * owns `data` again once the write resolves (it may hand its memory to a hashing thread): a
   * backend that holds bytes longer copies them.
   */
  write(data: Buffer | readonly Buffer[], position: number, guard?: () => void): Promise<void>;
  /**
   * Makes the writes that completed before this call durable and returns the size that is durable,
   * to the byte on every backend: a committed size is never more than what sync returned, and a
   * writer resumes exactly there. The writer's frequent commits call it. A backend that writes in
   * parts (S3) may answer a part boundary instead when a whole part reached the store since its
   * last answer, leaving the bytes after it for the next sync (no extra request now); otherwise
   * (nothing new reached the store whole) it writes them (S3: as a tail piece), so every call that
   * finds bytes not yet durable advances the durable size. `final`: the object is complete (its
   * last part is written and nothing may be appended).
   */
  sync(final?: boolean): Promise<number>;
  /**
   * As `sync`, but always covering every write that completed before this call: for when a client
   * is told what is persisted (a GCS flush) and when a stream stops.
   */
  syncAll(): Promise<number>;
  /** Releases the object; bytes written since the last sync may be lost. */
  close(): Promise<void>;
}

export interface StagingEntry {
  uploadId: string;
  size: number;
  modifiedMs: number;
}

/**
 * What a store can do for clients directly, by presigned URLs (S3): bytes then go between client
 * and bucket without passing through Ferry. Local disk has none; Ferry's own data plane serves.
 */
export interface DirectAccess {
  /** The largest part one presigned PUT may carry (S3: 5 GiB). */
  readonly maxPartBytes: number;
  /**
   * A URL that PUTs part `index` of the staging object `uploadId` straight to the store. The client
   * sends `headers` and exactly `contentLength` bytes (signed: the store refuses another length);
   * a part PUT again replaces the previous one.
   */
  stagingPartPutUrl(
    uploadId: string,
    index: number,
    o: { contentLength: number; contentType?: string; expiresInSeconds: number },
  ): Promise<{ url: string; headers: Record<string, string> }>;
  /** Size and MD5 (hex) of part `index` as the store holds it, or undefined if it has none. */
  stagingPart(uploadId: string, index: number): Promise<{ size: number; md5: string } | undefined>;
  /**
   * Copies the staging object `from` (its parts as they are at this moment, inside the store) to a
   * new staging object `to` that no presigned URL names: what Ferry verifies there is exactly what
   * it publishes, whatever clients PUT to `from` meanwhile. Returns the size copied, undefined if
   * `from` holds nothing.
   */
  snapshotStaging(from: string, to: string): Promise<number | undefined>;
  /** A URL that GETs a blob straight from the store (`Range` honoured). */
  blobGetUrl(sha256: string, o: { expiresInSeconds: number; contentType?: string; fileName?: string }): Promise<string>;
}

export interface Storage {
  readonly kind: 'fs' | 's3';
  /** Present when clients can reach the store directly (S3). */
  readonly direct?: DirectAccess;
  /**
   * Opens (creating if needed) an upload's staging object, cutting it to `size` bytes. Never
   * extends it: if fewer than `size` bytes are staged, the committed bytes were lost (InternalError).
   * The caller is its one writer (it holds the upload's lease). On disk the file is also locked
   * for this writer until it is closed, before it is cut: a previous writer whose lease lapsed (a
   * paused process) may still hold it open, and its late writes must not land between this
   * writer's bytes; after a short wait for it to notice and close, UnavailableError. On S3, where
   * nothing can be locked, `fence` (the lease's fencing token, growing with every writer) is in the
   * key of every object the writer PUTs, and of two objects holding the same bytes of the upload
   * the higher fence is read: a late PUT of a previous writer never replaces its successor's.
   */
  openStaging(uploadId: string, size: number, fence?: number): Promise<StagingFile>;
  /**
   * Opens (creating if needed) a staging object of exactly `size` bytes whose ranges are written
   * independently and in any order, by several writers at once (multipart parts at their offsets).
   * Never truncates or moves bytes already written; unwritten ranges read as zeros. `range` is
   * what this writer writes: on disk it is locked for it until it is closed, as openStaging locks
   * the whole file (UnavailableError if a previous writer of it does not let go).
   */
  openStagingForParts(uploadId: string, size: number, range?: { start: number; end: number }): Promise<StagingFile>;
  /** Size of the staging object, or undefined if there is none. */
  stagingSize(uploadId: string): Promise<number | undefined>;
  /** Streams `[start, end)` of a staging object. */
  readStaging(uploadId: string, start: number, end: number): Readable;
  deleteStaging(uploadId: string): Promise<void>;
  listStaging(): AsyncIterable<StagingEntry>;
  /**
   * Publishes a durable staging object as the blob `sha256`, atomically: readers see the whole blob
   * or none. The staging object is gone afterwards. Idempotent: if the blob already exists, the
   * staging object is simply removed (same digest, same bytes).
   */
  publishStaging(uploadId: string, sha256: string): Promise<void>;
  /**
   * Stores `data` as the blob `sha256` (which the caller computed), atomically and durably, in one
   * step: for uploads small enough to arrive whole. Idempotent.
   */
  putBlob(data: Buffer, sha256: string): Promise<void>;
  /** Size of a published blob, or undefined if absent. */
  blobSize(sha256: string): Promise<number | undefined>;
  /** blobSize of many blobs at once (a FindMissingBlobs of thousands of digests), in their order. */
  blobSizes(sha256s: readonly string[]): Promise<(number | undefined)[]>;
  /** Streams `[start, end)` of a blob in chunks of at most `chunkSize` bytes. */
  readBlob(sha256: string, start: number, end: number, chunkSize?: number): Readable;
  deleteBlob(sha256: string): Promise<void>;
  /** Throws if the backend cannot be used (for readiness probes). */
  check(): Promise<void>;
}

export const SHA256_EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const UPLOAD_ID = /^[A-Za-z0-9_-]{1,128}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export function assertUploadId(uploadId: string): void {
  if (!UPLOAD_ID.test(uploadId)) throw new TypeError(`invalid upload id ${JSON.stringify(uploadId)}`);
}

export function assertSha256(sha256: string): void {
  if (!SHA256.test(sha256)) throw new TypeError(`invalid sha256 ${JSON.stringify(sha256)}`);
}
