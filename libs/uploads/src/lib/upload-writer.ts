import { performance } from 'node:perf_hooks';
import type { CatalogObject } from '@ferry/catalog';
import { AlreadyExistsError, InvalidArgumentError } from '@ferry/errors';
import type { FinishRecord, Lease, SessionStore, UploadSession } from '@ferry/sessions';
import type { StagingFile, Storage } from '@ferry/storage';
import { BatchedWriter } from './batched-writer';
import { type Digests, type HashPool, missingDigests } from './hashing';
import type { StreamDigests } from './stream-digests';
import { LeaseKeeper } from './lease-keeper';
import type { Publisher } from './publisher';
import { uploadMetrics } from './upload-metrics';

export interface WriterOptions {
  fsyncBytes: number;
  fsyncIntervalMs: number;
  /** Bytes handed to the disk but not yet written before `write` waits. */
  maxInFlightBytes: number;
  /** Commit only on `flush` / `finish` (see OpenWriterOptions.holdCommits). */
  holdCommits?: boolean;
}

/** What the protocol declared about the content (lowercase hex digests). */
export interface Expectation {
  size?: number;
  sha256?: string;
  md5?: string;
  crc32c?: string;
  sha512?: string;
  /** Who declared it, for the error message ("the resource name", "object_checksums"). */
  declaredBy?: string;
}

export interface WriterDeps {
  sessions: SessionStore;
  storage: Storage;
  publisher: Publisher;
  /** Hashes what the stream's hasher did not (digests declared after the bytes). */
  hashPool: HashPool;
  /**
   * Takes the digests of a writer that closed cleanly, covering `[0, committed)`, when they cannot
   * be saved in the session (see UploadEngine.openWriter).
   */
  park?: (hasher: StreamDigests, committed: number) => void;
}

/**
 * The single writer of one upload, holding its lease. Bytes are hashed and written as they arrive;
 * the committed size advances only after the bytes are durable (fsync in batches of `fsyncBytes`
 * or every `fsyncIntervalMs`) and is moved in Redis by compare-and-set under the lease's fence.
 * `finish` verifies and publishes atomically; `close` keeps whatever is durable for a later resume.
 */
export class UploadWriter {
  private committed: number;
  /** Where this writer began (the committed size when it took the lease). */
  private readonly start: number;
  /** Writes and hashes the bytes, in order (absent once publishing: nothing more is written). */
  private readonly out?: BatchedWriter;
  private commitRunning?: Promise<void>;
  private failure?: unknown;
  private lastCommitAt = performance.now();
  private commitTimer?: NodeJS.Timeout;
  private readonly leaseKeeper: LeaseKeeper;
  private closed = false;
  /** This upload's metric series, looked up once (not per chunk). */
  private readonly metrics: {
    bytesReceived: ReturnType<typeof uploadMetrics.bytesReceived.labels>;
    commitSeconds: ReturnType<typeof uploadMetrics.commitSeconds.labels>;
  };

  constructor(
    private readonly deps: WriterDeps,
    readonly session: UploadSession,
    private readonly lease: Lease,
    private readonly file: StagingFile | undefined,
    private readonly hasher: StreamDigests | undefined,
    private readonly options: WriterOptions,
    leaseTakenAt: number,
  ) {
    this.start = lease.committed;
    this.committed = lease.committed;
    this.metrics = {
      bytesReceived: uploadMetrics.bytesReceived.labels({ protocol: session.protocol }),
      commitSeconds: uploadMetrics.commitSeconds.labels({ protocol: session.protocol }),
    };
    this.leaseKeeper = new LeaseKeeper(
      () => this.deps.sessions.renewLease(this.lease),
      this.deps.sessions.leaseTtlMs,
      leaseTakenAt,
      'writer lease may have expired; resume',
      (err) => (this.failure ??= err),
    );
    if (file && hasher) {
      // Never touch staging without a lease we know is live: a stale writer must not overwrite a
      // successor's bytes. Checked again when each write really starts (it may wait behind others).
      const guard = () => {
        if (this.failure !== undefined) throw this.failure;
        this.leaseKeeper.check();
      };
      this.out = new BatchedWriter(file, lease.committed, hasher.written, guard, {
        maxInFlightBytes: options.maxInFlightBytes,
        onFailure: (err) => (this.failure ??= err),
      });
    }
  }

  /** The next expected offset. */
  private get offset(): number {
    return this.out ? this.start + this.out.received : this.committed;
  }

  /** Bytes received so far (the next expected offset). */
  get receivedSize(): number {
    return this.offset;
  }

  get committedSize(): number {
    return this.committed;
  }

  /** True when a previous writer already verified the bytes and began publishing. */
  get publishing(): boolean {
    return this.session.state === 'publishing';
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new Error('writer is closed');
  }

  /**
   * Digests cover the whole content, but a resumed writer starts mid-way: feed the committed
   * prefix back through the hasher (the lease is renewed meanwhile).
   */
  async rehashCommittedPrefix(): Promise<void> {
    if (!this.hasher || this.committed === 0) return;
    for await (const chunk of this.deps.storage.readStaging(this.session.id, 0, this.committed)) {
      this.throwIfFailed();
      await this.hasher.update(chunk as Buffer);
    }
  }

  /**
   * Appends `chunk` at the current offset and resolves when the writer can take more. Takes
   * ownership of `chunk`: it is hashed now, written later (small chunks gathered into 1 MiB batches:
   * Bazel sends 16 KiB messages), and may then move to a hashing thread with the whole ArrayBuffer
   * under it (see StreamDigests), so the caller must not touch it afterwards, nor other views of
   * the same memory: read the other fields of a decoded message before writing its data.
   */
  async write(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    if (!this.out) throw new InvalidArgumentError('upload is complete; no more data accepted');
    // Never touch staging without a lease we know is live: a stale writer must not overwrite a successor's bytes.
    if (!this.leaseKeeper.valid) await this.leaseKeeper.renew();
    this.metrics.bytesReceived.inc(chunk.length);
    (this.hasher as StreamDigests).arrived(chunk);
    await this.out.push(chunk);
    this.throwIfFailed();
    this.maybeCommit();
  }

  /** Whether a writer asked this one to let go of the upload (lease policy `request`: tus). */
  releaseAsked(): Promise<boolean> {
    return this.deps.sessions.releaseAsked(this.lease);
  }

  private maybeCommit(): void {
    if (this.options.holdCommits || this.commitRunning || this.closed || this.failure !== undefined) return;
    const uncommitted = this.offset - this.committed;
    if (uncommitted <= 0) return;
    const elapsed = performance.now() - this.lastCommitAt;
    if (uncommitted < this.options.fsyncBytes && elapsed < this.options.fsyncIntervalMs) {
      this.commitTimer ??= setTimeout(() => {
        this.commitTimer = undefined;
        this.maybeCommit();
      }, this.options.fsyncIntervalMs - elapsed);
      return;
    }
    this.commit().then(
      () => this.maybeCommit(),
      (err: unknown) => {
        this.failure ??= err;
      },
    );
  }

  /**
   * Commits what the storage made durable of everything received so far (all of it when `final` or
   * `all`); one commit at a time (they compare-and-set in order).
   */
  private async commit(final = false, all = false): Promise<void> {
    if (final) {
      // A commit may already cover bytes still on their way to the hasher (written while it waited
      // on the disk): the digests that follow a final commit must include them.
      await this.out?.drain();
    }
    // then wait for a running commit (a timer may have started one meanwhile): one at a time, or
    // two compare-and-sets from the same committed size would race
    while (this.commitRunning) await this.commitRunning.catch(() => undefined);
    if (this.offset <= this.committed || !this.file) return;
    const run = this.commitNow(this.file, final, all);
    this.commitRunning = run;
    try {
      await run;
    } finally {
      if (this.commitRunning === run) this.commitRunning = undefined;
    }
  }

  /** Makes the bytes received so far durable, then moves the committed size to what is. */
  private async commitNow(file: StagingFile, final: boolean, all: boolean): Promise<void> {
    const sentAt = performance.now();
    await this.out?.drain();
    if (this.failure !== undefined) throw this.failure;
    const committing = performance.now();
    // What the storage says is durable, which may include chunks written after the wait above;
    // never cut to a size of ours: on S3 only the sizes it reports can be resumed from.
    const synced = final ? await file.sync(true) : all ? await file.syncAll() : await file.sync();
    const target = Math.min(synced, this.offset);
    if (target <= this.committed) return;
    await this.deps.sessions.commit(this.lease, this.committed, target);
    this.committed = target;
    this.lastCommitAt = performance.now();
    this.metrics.commitSeconds.observe((this.lastCommitAt - committing) / 1000);
    this.leaseKeeper.extend(sentAt);
  }

  /**
   * Commits everything received and returns the committed size (`final`: the upload is complete).
   * For when a client asks what is persisted, and when a stream stops: unlike the writer's own
   * frequent commits (StagingFile.sync, which on S3 may stop at a part that just reached the
   * bucket), this always covers everything received (StagingFile.syncAll).
   */
  async flush(final = false): Promise<number> {
    await this.commit(final, true);
    this.throwIfFailed();
    return this.committed;
  }

  /**
   * Verifies the content against `expect` and publishes it: blob first (atomic rename), then the
   * catalog entry built by `describe`, then the session is dropped. On a verification failure the
   * staged bytes and the session are discarded (nothing is stored) and InvalidArgumentError thrown.
   * `remember` keeps the finished session as a record of the outcome (see SessionStore.finish).
   */
  async finish(
    expect: Expectation,
    describe: (size: number, digests: Digests) => CatalogObject,
    remember?: (published: CatalogObject) => FinishRecord,
  ): Promise<CatalogObject> {
    let digests: Digests;
    let size: number;
    if (this.publishing && this.session.digests) {
      digests = this.session.digests;
      size = this.committed;
    } else {
      size = await this.flush(true);
      digests = await (this.hasher as StreamDigests).digest();
      const late = missingDigests(expect, digests);
      // declared only now: one pass over the staged bytes, before anything is published
      if (late.length > 0) {
        const staged = this.deps.storage.readStaging(this.session.id, 0, size);
        digests = { ...digests, ...(await this.deps.hashPool.digestOf(late, staged, () => this.throwIfFailed())) };
      }
      const mismatch = verifyContent(expect, size, digests);
      if (mismatch) {
        uploadMetrics.failed.inc({ protocol: this.session.protocol });
        await this.abandon();
        throw new InvalidArgumentError(mismatch);
      }
      await this.deps.sessions.markPublishing(this.lease, digests);
      await this.file?.close();
    }
    // the lease stays renewed while the bytes are published: on S3 that is a copy, which takes time
    this.stopCommitTimer();
    const object = describe(size, digests);
    try {
      await this.deps.publisher.storeStaged(this.session.id, digests.sha256, object.name);
    } catch (err) {
      this.closed = true;
      this.stopTimers();
      await this.deps.sessions.releaseLease(this.lease).catch(() => undefined);
      throw err;
    }
    this.closed = true;
    this.stopTimers();
    try {
      const published = await this.deps.publisher.publish(object);
      await this.deps.sessions.finish(this.lease, remember?.(published));
      uploadMetrics.completed.inc({ protocol: this.session.protocol });
      return published;
    } catch (err) {
      // Immutable name taken by other content: this upload can never succeed, forget it.
      // Anything else: keep the session (state publishing) so a retry completes the publish.
      if (err instanceof AlreadyExistsError) await this.deps.sessions.finish(this.lease);
      else await this.deps.sessions.releaseLease(this.lease).catch(() => undefined);
      throw err;
    }
  }

  /** Drops the staged bytes and the session: the upload can never succeed. */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.stopTimers();
    this.closed = true;
    await this.out?.settle();
    this.hasher?.dispose();
    await this.file?.close();
    await this.deps.storage.deleteStaging(this.session.id);
    await this.deps.sessions.finish(this.lease);
  }

  /**
   * Ends this writer without finishing the upload: commits what is durable-able (unless a failure
   * makes the tail suspect, or `keepReceived` is false: what was received since the last commit is
   * forgotten, as after a crash), releases the lease, and returns the committed size.
   */
  async close(keepReceived = true): Promise<number> {
    if (this.closed) return this.committed;
    try {
      if (this.failure === undefined && keepReceived) await this.flush();
    } catch {
      // keep the last good committed size
    }
    // everything received is committed and was hashed (the flush drained every batch): the
    // digests cover exactly [0, committed) and the upload's next writer can continue them
    const clean = this.failure === undefined && keepReceived && this.committed === this.offset;
    this.closed = true;
    this.stopTimers();
    await this.out?.settle();
    if (clean && this.hasher && this.committed > 0) await this.leaveDigests(this.hasher);
    else this.hasher?.dispose();
    await this.file?.close().catch(() => undefined);
    await this.deps.sessions.releaseLease(this.lease).catch(() => undefined);
    return this.committed;
  }

  /**
   * Leaves the digests, which cover exactly `[0, committed)`, to the upload's next writer: their
   * state in the session, under this writer's lease (before it is released), for a writer on any
   * replica; digests that cannot be saved (no native addon, sha512) are parked in this process.
   * Never fails the close: a next writer that finds nothing hashes the committed bytes again.
   */
  private async leaveDigests(hasher: StreamDigests): Promise<void> {
    // (a hashing thread that failed: nothing to leave)
    const saved = await hasher.save(this.committed).catch(() => null);
    if (saved === undefined && this.deps.park) return this.deps.park(hasher, this.committed);
    hasher.dispose();
    if (saved) await this.deps.sessions.saveDigests(this.lease, this.committed, saved).catch(() => undefined);
  }

  private stopTimers(): void {
    this.leaseKeeper.stop();
    this.stopCommitTimer();
  }

  private stopCommitTimer(): void {
    if (this.commitTimer) clearTimeout(this.commitTimer);
    this.commitTimer = undefined;
  }
}

/** Why the content does not match what was declared, or undefined when it does. */
export function verifyContent(expect: Expectation, size: number, digests: Digests): string | undefined {
  const by = expect.declaredBy ?? 'the resource name';
  if (expect.size !== undefined && size !== expect.size) {
    return `size mismatch: ${by} declares ${expect.size} bytes, ${size} were written`;
  }
  for (const algo of ['sha256', 'md5', 'crc32c', 'sha512'] as const) {
    const declared = expect[algo];
    if (declared !== undefined && digests[algo] !== declared) {
      return `digest mismatch: ${by} declares ${algo} ${declared}, the content hashes to ${digests[algo]}`;
    }
  }
  return undefined;
}
