import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Catalog, CatalogObject, DeleteOutcome } from '@ferry/catalog';
import { InvalidArgumentError, NotFoundError } from '@ferry/errors';
import type { LeasePolicy, NewSession, SessionStore, UploadSession } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { DigestNeeds, Digests, HashPool, InlineHasher, declaredDigests } from './hashing';
import { UnloadableStateError } from './resumable-hash';
import { StreamDigests } from './stream-digests';
import { Publisher } from './publisher';
import { uploadMetrics } from './upload-metrics';
import { Expectation, UploadWriter, WriterOptions, verifyContent } from './upload-writer';

/** How a face opens a writer (see UploadEngine.openWriter). */
export interface OpenWriterOptions {
  /** `refuse` (default): another writer is ConcurrentWriterError; `request`: and it is asked to let go (tus). */
  policy?: Extract<LeasePolicy, 'refuse' | 'request'>;
  /**
   * Commit only when asked (`flush`, `finish`), never on the writer's own schedule: what the
   * writer receives stays uncommitted until the face accepts it (tus: a chunk whose checksum is
   * checked at its end), and `close(false)` forgets it.
   */
  holdCommits?: boolean;
}

/** How many uploads' unsaveable digests the engine keeps between two of their writers (see UploadEngine.park). */
const PARKED_MAX = 1000;
/** How long it keeps them: a client that pauses longer pays a re-hash of the committed prefix. */
const PARKED_TTL_MS = 5 * 60_000;

export interface UploadEngineOptions {
  fsyncBytes: number;
  fsyncIntervalMs: number;
  maxInFlightBytes?: number;
}

/**
 * The upload engine every protocol face shares: sessions in Redis, bytes in staging, digests
 * computed on the way, publication into blobs and the catalog, and reads of what was published.
 * Faces reach storage and the catalog only through it.
 */
export class UploadEngine {
  private readonly writerOptions: WriterOptions;
  private readonly publisher: Publisher;
  /**
   * The digests of writers that ended cleanly without finishing (a tus PATCH) whose state could not
   * be saved in the session (a process without the native addon, or sha512), by upload: they cover
   * exactly `[0, committed)`, so the upload's next writer in this process continues them instead of
   * re-hashing its committed prefix (quadratic over a tus upload's PATCHes).
   */
  private readonly parked = new Map<string, { hasher: StreamDigests; key: string; timer: NodeJS.Timeout }>();

  constructor(
    private readonly sessions: SessionStore,
    private readonly storage: Storage,
    catalog: Catalog,
    private readonly hashPool: HashPool,
    options: UploadEngineOptions,
  ) {
    this.publisher = new Publisher(storage, catalog);
    this.writerOptions = {
      fsyncBytes: options.fsyncBytes,
      fsyncIntervalMs: options.fsyncIntervalMs,
      maxInFlightBytes: options.maxInFlightBytes ?? 1024 * 1024,
    };
  }

  /** Calls `listener` with every object published through the engine (the bounded cache counts its blobs). */
  onPublished(listener: (object: CatalogObject) => Promise<void>): void {
    this.publisher.onPublished(listener);
  }

  /** The published object `name`, unless there is none or it has expired (gone for every face). */
  object(name: string): Promise<CatalogObject | undefined> {
    return this.publisher.object(name);
  }

  /** Whether the blob `sha256` is stored whole (REAPI's CAS presence). */
  hasBlob(sha256: string, size: number): Promise<boolean> {
    return this.publisher.hasBlob(sha256, size);
  }

  /** Whether each blob is stored whole (REAPI's FindMissingBlobs). */
  hasBlobs(blobs: readonly { sha256: string; size: number }[]): Promise<boolean[]> {
    return this.publisher.hasBlobs(blobs);
  }

  /** Size of the blob `sha256` as stored, or undefined (Bazel's HTTP cache names a CAS blob by its hash alone). */
  blobSize(sha256: string): Promise<number | undefined> {
    return this.publisher.blobSize(sha256);
  }

  /** Streams `[start, end)` of the blob `sha256` (an object's `blob`). */
  readBlob(sha256: string, start: number, end: number, chunkSize?: number): Readable {
    return this.publisher.readBlob(sha256, start, end, chunkSize);
  }

  /** Deletes `name` if `protocol` published it and it is still the entry created at `createdAt`. */
  deleteOwn(name: string, createdAt: string, protocol: string): Promise<DeleteOutcome> {
    return this.publisher.deleteOwn(name, createdAt, protocol);
  }

  /**
   * Moves verified staged bytes into their blob (claimed first for `claimant`, the object's name,
   * so that the blob collector leaves an existing blob alone); idempotent. See Publisher.
   */
  storeStaged(stagingId: string, sha256: string, claimant: string): Promise<void> {
    return this.publisher.storeStaged(stagingId, sha256, claimant);
  }

  /** Puts the catalog entry of stored content, if absent (replacing an expired one). See Publisher. */
  publish(object: CatalogObject): Promise<CatalogObject> {
    return this.publisher.publish(object);
  }

  /**
   * Streams `[start, end)` of an upload's staged bytes, for a face that reads one upload's bytes
   * into another (tus concatenation: a final upload copies its finished partial uploads). Only
   * committed bytes, and the caller keeps them from changing or being deleted meanwhile by holding
   * the upload's writer lease (no writer can append, and the expiry never touches a leased upload).
   */
  readStaged(uploadId: string, start: number, end: number): Readable {
    return this.storage.readStaging(uploadId, start, end);
  }

  getSession(id: string): Promise<UploadSession | undefined> {
    return this.sessions.get(id);
  }

  getOrCreateSession(init: NewSession): Promise<UploadSession> {
    return this.sessions.getOrCreate(init);
  }

  /**
   * Publishes an upload that arrived whole in one message (the common case for small blobs): no
   * session, no staging, no lease; verify, store the blob durably, publish the catalog entry.
   * Verification happens before anything touches storage. Computes sha256, the `needs` and
   * whatever `expect` declares.
   */
  async publishWhole(
    data: Buffer,
    expect: Expectation,
    describe: (size: number, digests: Digests) => CatalogObject,
    needs: DigestNeeds = [],
  ): Promise<CatalogObject> {
    const hasher = new InlineHasher([...needs, ...declaredDigests(expect)]);
    hasher.update(data);
    const digests = await hasher.digest();
    const object = describe(data.length, digests);
    const protocol = { protocol: object.protocol };
    uploadMetrics.bytesReceived.inc(protocol, data.length);
    const mismatch = verifyContent(expect, data.length, digests);
    if (mismatch) {
      uploadMetrics.failed.inc(protocol);
      throw new InvalidArgumentError(mismatch);
    }
    await this.publisher.storeBytes(data, digests.sha256, object.name);
    const published = await this.publisher.publish(object);
    uploadMetrics.completed.inc(protocol);
    return published;
  }

  /**
   * Drops an unfinished upload: its staged bytes and its session. Refused (ABORTED) while a writer
   * holds it; a finished upload cannot be discarded (FAILED_PRECONDITION).
   */
  async discard(uploadId: string, policy: Extract<LeasePolicy, 'refuse' | 'request'> = 'refuse'): Promise<void> {
    const lease = await this.sessions.acquireLease(uploadId, policy);
    this.unpark(uploadId);
    try {
      await this.storage.deleteStaging(uploadId);
    } catch (err) {
      await this.sessions.releaseLease(lease).catch(() => undefined);
      throw err;
    }
    await this.sessions.finish(lease);
  }

  /**
   * Keeps `hasher`, which covers `[0, committed)` of `uploadId` and cannot be saved in the session,
   * for the upload's next writer in this process. A cache, not state: any other writer re-hashes.
   */
  private park(uploadId: string, hasher: StreamDigests, key: string): void {
    this.unpark(uploadId);
    if (this.parked.size >= PARKED_MAX) {
      const oldest = this.parked.keys().next().value;
      if (oldest !== undefined) this.unpark(oldest);
    }
    const timer = setTimeout(() => this.unpark(uploadId), PARKED_TTL_MS);
    timer.unref();
    this.parked.set(uploadId, { hasher, key, timer });
  }

  /**
   * The parked digests of `uploadId` if they were parked under `key` (the same session, by its
   * creation time: an upload discarded and made again under the same id on another replica is
   * another content; the same committed size; the same needs). Any others are disposed.
   */
  private unpark(uploadId: string, key?: string): StreamDigests | undefined {
    const entry = this.parked.get(uploadId);
    if (!entry) return undefined;
    this.parked.delete(uploadId);
    clearTimeout(entry.timer);
    if (key !== undefined && entry.key === key) return entry.hasher;
    entry.hasher.dispose();
    return undefined;
  }

  /**
   * Becomes the single writer of an upload (ConcurrentWriterError if another one is active) and
   * positions it at the committed size. The stream computes sha256 and the `needs`; digests
   * declared only at finish are computed then. A resumed upload continues the digests its previous
   * writer left when it ended cleanly, if they cover the committed size and are the same digests:
   * their state in the session (`writerDigests`, see UploadWriter.close), whichever process wrote
   * it, or digests that could not be saved, parked by a writer of this process. Otherwise (a writer
   * that failed or died, a state this process cannot load) it re-hashes its committed prefix.
   */
  async openWriter(uploadId: string, needs: DigestNeeds = [], options: OpenWriterOptions = {}): Promise<UploadWriter> {
    const takenAt = performance.now(); // before asking: the lease may start any time after this
    const lease = await this.sessions.acquireLease(uploadId, options.policy ?? 'refuse');
    const writerOptions = { ...this.writerOptions, holdCommits: options.holdCommits ?? false };
    let hasher: StreamDigests | undefined;
    let writer: UploadWriter;
    let continued = false;
    try {
      const session = await this.sessions.get(uploadId);
      // the expiry ended it between the lease and this read: the client's answer is that it expired
      if (!session) throw new NotFoundError(`upload ${uploadId} not found: it has just expired`);
      session.committed = lease.committed;
      uploadMetrics.streams.inc({ protocol: session.protocol, resumed: String(lease.committed > 0) });
      const deps = {
        sessions: this.sessions,
        storage: this.storage,
        publisher: this.publisher,
        hashPool: this.hashPool,
        park: (digests: StreamDigests, size: number) => this.park(uploadId, digests, parkKey(session.createdAt, size, needs)),
      };
      if (session.state === 'publishing') {
        return new UploadWriter(deps, session, lease, undefined, undefined, writerOptions, takenAt);
      }
      const file = await this.storage.openStaging(uploadId, lease.committed, lease.fence);
      hasher = await this.continued(uploadId, session, lease.committed, needs);
      continued = hasher !== undefined;
      hasher ??= new StreamDigests(this.hashPool, needs);
      writer = new UploadWriter(deps, session, lease, file, hasher, writerOptions, takenAt);
    } catch (err) {
      hasher?.dispose();
      await this.sessions.releaseLease(lease).catch(() => undefined);
      throw err;
    }
    try {
      if (!continued) await writer.rehashCommittedPrefix();
    } catch (err) {
      await writer.close(false); // (nothing received; and its digests cover only part of the prefix: not parked)
      throw err;
    }
    return writer;
  }

  /**
   * The digests a previous writer left covering the `committed` bytes (see openWriter), or
   * undefined: the prefix is to be hashed again.
   */
  private async continued(
    uploadId: string,
    session: UploadSession,
    committed: number,
    needs: DigestNeeds,
  ): Promise<StreamDigests | undefined> {
    const protocol = session.protocol;
    const parked = this.unpark(uploadId, parkKey(session.createdAt, committed, needs));
    if (committed === 0) return parked;
    if (parked) {
      uploadMetrics.prefixDigests.inc({ protocol, from: 'parked' });
      return parked;
    }
    if (session.writerDigests !== undefined) {
      try {
        const saved = await StreamDigests.resume(this.hashPool, needs, committed, session.writerDigests);
        if (saved) {
          uploadMetrics.prefixDigests.inc({ protocol, from: 'saved' });
          return saved;
        }
      } catch (err) {
        if (!(err instanceof UnloadableStateError)) throw err;
        // another build's, or not a state: hashing the bytes again is never wrong
      }
    }
    uploadMetrics.prefixDigests.inc({ protocol, from: 'rehashed' });
    return undefined;
  }
}

/** What parked digests must match to be continued: the session (its creation), the bytes they cover, the digests. */
function parkKey(createdAt: number, committed: number, needs: DigestNeeds): string {
  return `${createdAt}:${committed}:${[...needs].sort().join()}`;
}
