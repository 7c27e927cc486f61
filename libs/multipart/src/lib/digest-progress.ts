import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { FailedPreconditionError, InternalError, NotFoundError } from '@ferry/errors';
import type { StagingFile, Storage } from '@ferry/storage';
import { LeaseKeeper } from '@ferry/uploads';
import { partRange } from './model';
import { DigestRoundInfo, MultipartStore, MultipartUpload } from './multipart-store';
import type { DigestState, ResumableDigests } from './resumable';

export interface DigestProgressOptions {
  /** Lifetime of the digest lease; a process that dies holding it delays the digests this long. */
  leaseTtlMs: number;
  /** Bytes per round: the state is saved in Redis after each (on S3 the private copy is flushed too). */
  roundBytes?: number;
  /** A background round failed (the next added part, or complete, tries again). */
  onError?: (err: unknown, uploadId: string) => void;
  /** A round saved the digests over `bytes` more bytes. */
  onHashed?: (bytes: number) => void;
}

/** The whole-file digests of an upload whose every part is hashed, and the staging object they are of. */
export interface FinalDigests {
  md5: string;
  sha256: string;
  /** The staging object holding exactly the hashed bytes: the upload's own on disk, its private copy on S3. */
  source: string;
}

/**
 * S3: the bucket holds other bytes for a part than it was added with: a client PUT it again after
 * adding it (Ferry does not see PUTs to the bucket).
 */
export class PartReplacedError extends FailedPreconditionError {
  constructor(
    readonly partNumber: number,
    readonly added: string,
    readonly observed: string | undefined,
  ) {
    super(
      observed === undefined
        ? `part ${partNumber} is no longer in the bucket, although it was added`
        : `part ${partNumber} was PUT again after it was added: the bucket holds bytes of MD5 ${observed}, it was added with ${added}`,
    );
  }
}

const DEFAULT_ROUND_BYTES = 64 * 1024 * 1024;

/**
 * Advances a multipart upload's whole-file md5 and sha256 as its parts land, so that `complete`
 * has little or nothing left to hash.
 *
 * Parts land in any order; the digests can only take bytes in order, so they cover the leading run
 * of added parts (`dgParts` in the upload's record) and their state after it (`dgState`, a few
 * hundred bytes, see ResumableDigests). After a part is added, the process that added it (or any
 * later one: complete, the assembly job) takes the upload's digest lease (SET NX PX, one process at
 * a time), reads the added parts that follow the hashed ones from staging, hashes them off the
 * event loop continuing from the saved state (ResumableDigests), and saves the new state and count in Redis by
 * compare-and-set under the lease, round after round, until it reaches a part not yet added. A
 * process that dies loses at most its current round: Redis holds the last saved state, and the
 * lease lapses after `leaseTtlMs`.
 *
 * What is hashed is what is published, on both backends:
 * - on disk, Ferry receives every PUT. A PUT of a part the digests cover, or of an added part a
 *   round may be reading, bumps the upload's digest epoch (beginPart3), and digests covering it
 *   start again from byte 0; a round that began in another epoch saves nothing. Once complete is
 *   called the parts never change, and the staging file itself is verified and renamed into the blob.
 * - on S3, clients PUT parts straight to the bucket, as long as their URLs live, and Ferry does not
 *   see it: a part could be replaced after it was hashed, and a check of its ETag right before the
 *   publishing copy would leave a window in which it could still be replaced (a content address
 *   holding other bytes than its name, served to everyone whose file has that sha256). So the bytes
 *   a round hashes are the very bytes it writes, as it reads them, to a private copy of the upload
 *   (a staging object no URL names, `snapshot` in the record); that copy is what is verified and
 *   published. The ETag of each part is compared with the md5 it was added with before and after
 *   the part is read, only to tell a client that replaced a part: while UPLOADING the part is
 *   missing again (add it again); once complete was called the upload fails (PartReplacedError).
 */
export class DigestProgress {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly roundBytes: number;

  constructor(
    private readonly store: MultipartStore,
    private readonly storage: Storage,
    private readonly digests: ResumableDigests,
    private readonly options: DigestProgressOptions,
  ) {
    this.roundBytes = options.roundBytes ?? DEFAULT_ROUND_BYTES;
  }

  /**
   * A part of the upload was added: advance its digests in the background. Never throws and is
   * never awaited by the caller (the client's answer does not wait for hashing); a failure is
   * reported to `onError` and the next added part, or complete, picks up from the last saved state.
   */
  kick(uploadId: string): void {
    if (this.running.has(uploadId)) {
      // the run under way may have looked for added parts already: it runs once more when it ends
      this.again.add(uploadId);
      return;
    }
    const run = this.advance(uploadId)
      .then(() => undefined)
      .catch((err: unknown) => this.options.onError?.(err, uploadId))
      .finally(() => {
        this.running.delete(uploadId);
        if (this.again.delete(uploadId)) this.kick(uploadId);
      });
    this.running.set(uploadId, run);
  }

  /** Resolves when no background run of this process is under way (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running.values());
  }

  /**
   * The final digests, once every part is hashed: for an upload whose parts no longer change
   * (ASSEMBLING). Advances what is left, or waits for the process that holds the lease;
   * undefined if `deadline` (ms since the epoch) passes first. Throws PartReplacedError (S3) when a
   * part in the bucket is not what was added.
   */
  async finish(uploadId: string, deadline = Number.POSITIVE_INFINITY): Promise<FinalDigests | undefined> {
    let pause = 10;
    for (;;) {
      const local = this.running.get(uploadId);
      if (local) {
        // this process is at it already: it goes on until every added part is hashed
        if (!(await settlesBefore(local, deadline))) return undefined;
        continue;
      }
      const outcome = await this.advance(uploadId);
      const upload = await this.store.get(uploadId);
      if (!upload) throw new NotFoundError(`upload ${uploadId} no longer exists`);
      if (upload.digest.parts >= upload.parts) {
        const source = upload.snapshot ?? uploadId;
        return { ...(await this.finalOf(upload.digest.state ?? this.digests.start(), source, upload.request.fileSizeBytes)), source };
      }
      if (upload.state !== 'ASSEMBLING')
        throw new FailedPreconditionError(`upload ${uploadId} is ${upload.state}: its parts may still change`);
      if (outcome !== 'busy' && outcome !== 'lost') {
        throw new InternalError(`upload ${uploadId}: digests stopped at part ${upload.digest.parts} of ${upload.parts} (${outcome})`);
      }
      if (Date.now() >= deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(pause, deadline - Date.now()))));
      pause = Math.min(100, pause * 2);
    }
  }

  /**
   * The digests a complete saved state holds. A state this process cannot load (saved by another
   * build, as in a rolling upgrade) is not an error: the whole staged file (on S3 the private copy,
   * which holds exactly the hashed bytes) is hashed again, once.
   */
  private async finalOf(state: DigestState, source: string, size: number): Promise<{ md5: string; sha256: string }> {
    try {
      return await this.digests.final(state);
    } catch (err) {
      if (!this.digests.unloadable(err)) throw err;
      const again = await this.digests.advance(this.digests.start(), this.storage.readStaging(source, 0, size), () => undefined);
      return this.digests.final(again);
    }
  }

  /**
   * Advances the digests over the added parts that follow the hashed ones, round after round, while
   * this process holds the digest lease: 'done' when it reached a part not added (or the end),
   * 'busy' when another process holds the lease, 'lost' if this one lost it, 'settled' when the
   * upload is gone or settled, 'replaced' (S3) when a part had changed and is missing again.
   */
  async advance(uploadId: string): Promise<'done' | 'busy' | 'lost' | 'settled' | 'replaced'> {
    const upload = await this.store.get(uploadId);
    if (!upload || (upload.state !== 'UPLOADING' && upload.state !== 'ASSEMBLING')) return 'settled';
    const ttl = this.options.leaseTtlMs;
    const maxParts = Math.max(1, Math.floor(this.roundBytes / upload.request.partSizeBytes));
    const holder = randomBytes(9).toString('base64url');
    const takenAt = performance.now();
    const direct = this.storage.direct !== undefined;
    const begun = await this.store.digestBegin(uploadId, holder, ttl, maxParts, direct ? MultipartStore.snapshotId(uploadId) : '');
    if (begun.outcome !== 'round') return begun.outcome === 'nothing' ? 'done' : begun.outcome;
    const lease = new LeaseKeeper(
      () => this.store.digestRenew(uploadId, holder, ttl),
      ttl,
      takenAt,
      `the digest lease of upload ${uploadId} may have lapsed`,
    );
    const copy = direct && begun.round.snapshot ? new PrivateCopy(this.storage, begun.round.snapshot, begun.round.fence) : undefined;
    let round = begun.round;
    try {
      for (;;) {
        let hashed = round.upTo;
        let state: DigestState;
        try {
          state = await this.hashRound(upload, round, lease, copy);
        } catch (err) {
          if (!(round.hashed > 0 && this.digests.unloadable(err))) throw err;
          // a state this version cannot load (written by another): the digests start again from byte 0
          hashed = 0;
          state = this.digests.start();
        }
        const sentAt = performance.now();
        const saved = await this.store.digestSave(uploadId, holder, ttl, maxParts, round, hashed, state);
        if ((saved.outcome === 'round' || saved.outcome === 'released') && hashed > 0) this.options.onHashed?.(this.bytesOf(upload, round));
        if (saved.outcome === 'round') {
          lease.extend(sentAt);
          round = saved.round;
        } else if (saved.outcome === 'stale') {
          // a part changed while it was being hashed: nothing saved; again from what is saved now
          const again = await this.store.digestBegin(uploadId, holder, ttl, maxParts, '');
          if (again.outcome !== 'round') return again.outcome === 'nothing' ? 'done' : again.outcome;
          lease.extend(sentAt);
          round = again.round;
        } else {
          return saved.outcome === 'released' ? 'done' : saved.outcome;
        }
      }
    } catch (err) {
      await this.store.digestRelease(uploadId, holder).catch(() => undefined);
      if (!(err instanceof PartReplacedError)) throw err;
      const outcome = await this.store.partReplaced(uploadId, err.partNumber, err.added, err.observed ?? '');
      if (outcome === 'frozen') throw err;
      return outcome === 'gone' ? 'settled' : 'replaced';
    } finally {
      lease.stop();
      await copy?.close();
    }
  }

  private bytesOf(upload: MultipartUpload, round: DigestRoundInfo): number {
    const { fileSizeBytes: size, partSizeBytes: partSize } = upload.request;
    return partRange(round.upTo, size, partSize).end - partRange(round.hashed + 1, size, partSize).start;
  }

  /** Hashes parts round.hashed+1..round.upTo after the saved state (on S3 copying them as they are read). */
  private async hashRound(upload: MultipartUpload, round: DigestRoundInfo, lease: LeaseKeeper, copy?: PrivateCopy): Promise<DigestState> {
    const { fileSizeBytes: size, partSizeBytes: partSize } = upload.request;
    const start = partRange(round.hashed + 1, size, partSize).start;
    const end = partRange(round.upTo, size, partSize).end;
    const check = () => lease.check();
    const added = copy ? await this.store.addedMd5s(upload.id, round.hashed + 1, round.upTo) : [];
    if (copy) {
      await this.checkParts(upload, round, added);
      await copy.seek(start);
    }
    const storage = this.storage;
    async function* chunks(): AsyncGenerator<Buffer> {
      for await (const chunk of storage.readStaging(upload.id, start, end)) {
        check();
        // written before it is handed to the hashing thread (which may take its memory)
        if (copy) await copy.write(chunk as Buffer, check);
        yield chunk as Buffer;
      }
    }
    const state = await this.digests.advance(round.state || this.digests.start(), chunks(), check);
    if (copy) {
      // unchanged while it was read, or the bytes copied may be a mix of two PUTs
      await this.checkParts(upload, round, added);
      const durable = await copy.sync(round.upTo === upload.parts);
      if (durable !== end) throw new InternalError(`upload ${upload.id}: the private copy holds ${durable} bytes, not ${end}`);
    }
    return state;
  }

  /** S3: every part of the round is in the bucket as it was added (same size and md5). */
  private async checkParts(upload: MultipartUpload, round: DigestRoundInfo, added: (string | undefined)[]): Promise<void> {
    const direct = this.storage.direct;
    if (!direct) return;
    const { fileSizeBytes: size, partSizeBytes: partSize } = upload.request;
    await Promise.all(
      added.map(async (md5, i) => {
        const n = round.hashed + 1 + i;
        const { start, end } = partRange(n, size, partSize);
        const held = await direct.stagingPart(upload.id, n - 1);
        if (md5 === undefined || held?.md5 !== md5 || held.size !== end - start) throw new PartReplacedError(n, md5 ?? '', held?.md5);
      }),
    );
  }
}

/** S3: the private copy of the hashed bytes, written in order as they are hashed (see DigestProgress). */
class PrivateCopy {
  private file?: StagingFile;
  private at = -1;

  constructor(
    private readonly storage: Storage,
    readonly stagingId: string,
    /** The digest lease's fence of the round's holder. */
    private readonly fence: number,
  ) {}

  /** Continues the copy at `offset` (what the saved digests cover; anything after it is cut). */
  async seek(offset: number): Promise<void> {
    if (this.file && this.at === offset) return;
    await this.close();
    // a round of a previous holder that stalled past its lease may still PUT into the copy: its
    // objects carry a lower fence than this holder's, which the copy is read by (see S3Storage)
    this.file = await this.storage.openStaging(this.stagingId, offset, this.fence);
    this.at = offset;
  }

  async write(chunk: Buffer, guard: () => void): Promise<void> {
    if (!this.file) throw new InternalError('private copy not open');
    await this.file.write(chunk, this.at, guard);
    this.at += chunk.length;
  }

  /** Makes the copy durable as far as written; `final` when it is complete. Returns the durable size. */
  async sync(final: boolean): Promise<number> {
    if (!this.file) throw new InternalError('private copy not open');
    const durable = final ? await this.file.sync(true) : await this.file.syncAll();
    if (final) await this.close();
    return durable;
  }

  async close(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    this.at = -1;
    await file?.close().catch(() => undefined);
  }
}

/** Whether `p` settles before `deadline` (ms since the epoch). */
async function settlesBefore(p: Promise<unknown>, deadline: number): Promise<boolean> {
  if (deadline === Number.POSITIVE_INFINITY) {
    await p;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
