import { randomBytes } from 'node:crypto';
import { AlreadyExistsError, ConcurrentWriterError, FailedPreconditionError, NotFoundError } from '@ferry/errors';
import { Redis, RedisKeys, bindScripts, codeOf } from '@ferry/redis';
import * as scripts from './session.scripts';
import {
  Acquire,
  Amend,
  BeginExpiry,
  Commit,
  Create,
  EndExpiry,
  Finish,
  Record,
  Release,
  Renew,
  SaveDigests,
  Update,
} from './session.scripts';

/** A takeover found a finisher publishing the upload (the object API answers 409 "being finished"). */
export class PublishingError extends ConcurrentWriterError {}

/** An attribute a client fills in (a declared hash) already has another value. */
export class ConflictingAttributeError extends AlreadyExistsError {
  constructor(readonly attribute: string) {
    super(`${attribute} differs from the one already declared`);
  }
}

/** `finished`: only kept when the protocol asked to remember the outcome (see `finish`). */
/** An `expiring` session is gone for every reader and writer; the expiry job is deleting its bytes. */
export type SessionState = 'open' | 'publishing' | 'finished' | 'expiring';

/** An upload in progress, as stored in Redis. */
export interface UploadSession {
  id: string;
  /** The client-facing name (resource name, object name...). */
  name: string;
  protocol: string;
  owner: string;
  committed: number;
  state: SessionState;
  createdAt: number;
  updatedAt: number;
  /** Protocol-specific facts fixed at creation (expected size/digest, content type...). */
  attributes: Record<string, string>;
  /** Digests recorded when publishing began, so an interrupted publish can be completed. */
  digests?: RecordedDigests;
  /** What a finished session recorded about its outcome (opaque to the store). */
  result?: string;
  /** The fence of the latest writer lease taken (0: none yet). */
  fence: number;
  /** The fence of the writer whose bytes `committed` counts, for a content written whole (see `record`). */
  writtenBy?: number;
  /** When a session with a lifetime from its creation ends (ms; see NewSession.lifetimeMs). */
  deadline?: number;
  /**
   * The running digests the last writer that ended cleanly left for the next one (see
   * `saveDigests`): opaque here, they say themselves which bytes and digests they cover.
   */
  writerDigests?: string;
}

/** The digests an upload's bytes were found to have (sha256 always; the others when computed). */
export interface RecordedDigests {
  sha256: string;
  md5?: string;
  crc32c?: string;
  sha512?: string;
}

const OPTIONAL_DIGESTS = ['md5', 'crc32c', 'sha512'] as const;

/** Keep a finished session, as a record of its outcome, for `retainMs`. */
export interface FinishRecord {
  result: string;
  retainMs: number;
}

export interface NewSession {
  id: string;
  name: string;
  protocol: string;
  owner: string;
  attributes?: Record<string, string>;
  /**
   * A lifetime counted from creation (the object API's uploads), instead of from the last activity:
   * the session is gone for every reader and writer once it has passed, and the expiry job removes it.
   */
  lifetimeMs?: number;
}

/**
 * How a writer takes an upload's lease: `refuse` when another writer holds it (ByteStream, GCS:
 * ConcurrentWriterError), or `takeover`: the newest writer wins and replaces the whole content (an
 * object API PUT), unless a finisher holds a publishing session; or `publish`: as `refuse`, and
 * the session is publishing from the same step (a finisher that publishes content written whole);
 * or `request`: as `refuse`, and the holder is asked to let go (see `releaseAsked`): tus's lock
 * release, where a client resuming while a stale PATCH still holds the upload gets it released
 * rather than waiting out the lease (the caller retries until it gets the lease).
 */
export type LeasePolicy = 'refuse' | 'takeover' | 'publish' | 'request';

/** A change of a session's attributes (see `amend`). */
export interface AttributeChange {
  /** Attributes that must still have these values (else NotFoundError: the upload is not this one). */
  match?: Record<string, string>;
  /** Set where absent; ConflictingAttributeError where present with another value. */
  fill?: Record<string, string>;
  /** Overwritten. */
  set?: Record<string, string>;
}

/** Proof of holding an upload's writer lease; `fence` grows with every acquisition. */
export interface Lease {
  uploadId: string;
  token: string;
  fence: number;
  /** Committed size when the lease was taken. */
  committed: number;
  /** The fence of the writer whose bytes were recorded before a takeover forgot them (see LeasePolicy). */
  replaced?: number;
  deadline?: number;
}

export interface SessionStoreOptions {
  idleLifetimeMs: number;
  leaseTtlMs: number;
}

/**
 * Upload sessions in Redis: creation, a writer lease with a fencing token, compare-and-set of the
 * committed size, idle expiry. Stateless: any replica can serve any upload.
 */
export class SessionStore {
  private readonly run;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly options: SessionStoreOptions,
  ) {
    const {
      create2,
      acquireLease2,
      renewLease2,
      releaseLease2,
      commit2,
      saveDigests2,
      update2,
      record2,
      amend2,
      finish2,
      beginExpiry2,
      endExpiry3,
    } = scripts;
    this.run = bindScripts(redis, {
      create2,
      record2,
      amend2,
      acquireLease2,
      renewLease2,
      releaseLease2,
      commit2,
      saveDigests2,
      update2,
      finish2,
      beginExpiry2,
      endExpiry3,
    });
  }

  get leaseTtlMs(): number {
    return this.options.leaseTtlMs;
  }

  private k(id: string): [string, string] {
    return [this.keys.upload(id), this.keys.uploadLease(id)];
  }

  /** Retention of a session key in Redis: a safety net well past the expiry job's cutoff. */
  private get keyTtlMs(): number {
    return this.options.idleLifetimeMs * 2;
  }

  /** Creates the session unless it exists; returns the stored one either way. */
  async getOrCreate(init: NewSession): Promise<UploadSession> {
    const now = Date.now();
    const fields: (string | number)[] = [
      'name',
      init.name,
      'protocol',
      init.protocol,
      'owner',
      init.owner,
      'committed',
      0,
      'state',
      'open',
      'createdAt',
      now,
      'updatedAt',
      now,
      'fence',
      0,
      'attributes',
      JSON.stringify(init.attributes ?? {}),
      ...(init.lifetimeMs !== undefined ? ['deadline', now + init.lifetimeMs] : []),
    ];
    const created = codeOf('create2', Create, await this.run.create2(this.k(init.id), this.keyTtlMs, ...fields));
    const deadline = init.lifetimeMs !== undefined ? now + init.lifetimeMs : undefined;
    if (created === 'created') await this.touchIndex(init.id, now, deadline);
    const session = await this.get(init.id);
    // (an upload of this id is being expired: it can be created again once that is done)
    if (!session) throw new NotFoundError(`upload ${init.id} has just expired; start it again`);
    return session;
  }

  /** The session, unless there is none or it is being expired. */
  async get(id: string, now = Date.now()): Promise<UploadSession | undefined> {
    const h = await this.redis.hgetall(this.keys.upload(id));
    if (!h['name'] || h['state'] === 'expiring') return undefined;
    const deadline = h['deadline'] ? Number(h['deadline']) : undefined;
    if (deadline !== undefined && deadline <= now) return undefined;
    return {
      id,
      name: h['name'],
      protocol: h['protocol'],
      owner: h['owner'],
      committed: Number(h['committed']),
      state: h['state'] as SessionState,
      createdAt: Number(h['createdAt']),
      updatedAt: Number(h['updatedAt']),
      attributes: JSON.parse(h['attributes'] ?? '{}') as Record<string, string>,
      digests: h['sha256']
        ? { sha256: h['sha256'], ...Object.fromEntries(OPTIONAL_DIGESTS.filter((a) => h[a]).map((a) => [a, h[a]])) }
        : undefined,
      ...(h['result'] !== undefined ? { result: h['result'] } : {}),
      fence: Number(h['fence'] ?? 0),
      ...(h['writtenBy'] ? { writtenBy: Number(h['writtenBy']) } : {}),
      ...(deadline !== undefined ? { deadline } : {}),
      ...(h['writerDigests'] !== undefined ? { writerDigests: h['writerDigests'] } : {}),
    };
  }

  /**
   * Takes the writer lease (see LeasePolicy) of the session, if its attributes `match`.
   * NotFoundError if there is none (or they do not match), ConcurrentWriterError (ABORTED) if
   * someone holds the lease (`refuse`), PublishingError if a finisher holds it (`takeover`).
   */
  async acquireLease(id: string, policy: LeasePolicy = 'refuse', match: Record<string, string> = {}): Promise<Lease> {
    const holder = randomBytes(9).toString('base64url');
    const now = Date.now();
    const r = await this.run.acquireLease2(this.k(id), holder, this.options.leaseTtlMs, this.keyTtlMs, now, policy, JSON.stringify(match));
    const outcome = codeOf('acquireLease2', Acquire, r);
    if (outcome === 'noSession') throw new NotFoundError(`upload ${id} not found`);
    if (outcome === 'held') throw new ConcurrentWriterError('another writer is active on this upload; retry later');
    if (outcome === 'finished') throw new FailedPreconditionError(`upload ${id} is already finished`);
    if (outcome === 'publishing') throw new PublishingError(`upload ${id} is being published`);
    const deadline = r[4] ? Number(r[4]) : undefined;
    await this.touchIndex(id, now, deadline);
    const fence = Number(r[1]);
    const replaced = policy === 'takeover' && r[3] ? Number(r[3]) : undefined;
    return {
      uploadId: id,
      fence,
      token: `${holder}:${fence}`,
      committed: Number(r[2]),
      ...(replaced !== undefined ? { replaced } : {}),
      ...(deadline !== undefined ? { deadline } : {}),
    };
  }

  /** Whether a writer (policy `request`) asked the holder of `lease` to let go of it. */
  async releaseAsked(lease: Lease): Promise<boolean> {
    return (await this.redis.hget(this.keys.upload(lease.uploadId), 'releaseAsked')) === lease.token;
  }

  /** Whether someone holds the upload's writer lease. */
  async leaseHeld(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.uploadLease(id))) === 1;
  }

  /**
   * Records that the lease holder wrote the whole content, `size` bytes with these digests, in its
   * own staging (the object API's PUT), and releases the lease. ConcurrentWriterError if a newer
   * writer took it over meanwhile: nothing is recorded.
   */
  async record(lease: Lease, size: number, digests: RecordedDigests): Promise<void> {
    const fields = digestFields(digests);
    const r = await this.run.record2(this.k(lease.uploadId), lease.token, lease.fence, Date.now(), size, ...fields);
    this.underLease('record2', Record, r, lease);
    await this.touchIndex(lease.uploadId, Date.now(), lease.deadline);
  }

  /**
   * Changes the session's attributes while it is open (see AttributeChange and amend2): NotFoundError
   * when there is no such session or `match` differs, PublishingError while a finisher holds it,
   * ConflictingAttributeError when a `fill` attribute has another value.
   */
  async amend(id: string, change: AttributeChange): Promise<void> {
    const r = await this.run.amend2(this.k(id), Date.now(), JSON.stringify(change));
    const outcome = codeOf('amend2', Amend, r);
    if (outcome === 'gone') throw new NotFoundError(`upload ${id} not found`);
    if (outcome === 'publishing') throw new PublishingError(`upload ${id} is being published`);
    if (outcome === 'conflict') throw new ConflictingAttributeError(r[1] ?? '');
  }

  /** Extends the lease; throws ConcurrentWriterError if it was lost. */
  async renewLease(lease: Lease): Promise<void> {
    const r = await this.run.renewLease2(this.k(lease.uploadId), lease.token, this.options.leaseTtlMs, this.keyTtlMs);
    if (codeOf('renewLease2', Renew, r) === 'lost') throw new ConcurrentWriterError('writer lease lost; query the status and resume');
  }

  async releaseLease(lease: Lease): Promise<void> {
    // (not held: it lapsed, or another writer took it since; either way it is not ours to release)
    codeOf('releaseLease2', Release, await this.run.releaseLease2(this.k(lease.uploadId), lease.token));
    await this.touchIndex(lease.uploadId, Date.now(), lease.deadline);
  }

  /** Moves the committed size from `expected` to `next` (also renews the lease). */
  async commit(lease: Lease, expected: number, next: number): Promise<void> {
    const r = await this.run.commit2(
      this.k(lease.uploadId),
      lease.token,
      expected,
      next,
      Date.now(),
      this.keyTtlMs,
      this.options.leaseTtlMs,
    );
    if (this.underLease('commit2', Commit, r, lease) === 'conflict') {
      throw new ConcurrentWriterError(`committed size of upload ${lease.uploadId} changed under the writer`);
    }
  }

  /**
   * Leaves `state`, the running digests of the holder of `lease` covering the `committed` bytes, in
   * the session for the upload's next writer (a tus PATCH on another replica continues them instead
   * of hashing the committed bytes again). Only under the lease (ConcurrentWriterError if it was
   * lost: a stale writer never overwrites its successor's) and while `committed` is the committed
   * size (false otherwise: nothing saved).
   */
  async saveDigests(lease: Lease, committed: number, state: string): Promise<boolean> {
    const r = await this.run.saveDigests2(this.k(lease.uploadId), lease.token, committed, state);
    return this.underLease('saveDigests2', SaveDigests, r, lease) === 'saved';
  }

  /** Marks the session as publishing, recording the digests of its bytes. */
  async markPublishing(lease: Lease, digests: RecordedDigests): Promise<void> {
    const fields = digestFields(digests);
    const r = await this.run.update2(this.k(lease.uploadId), lease.token, Date.now(), 'state', 'publishing', ...fields);
    this.underLease('update2', Update, r, lease);
  }

  /** Gives up publishing (the content was refused): the session is open again and the lease released. */
  async reopen(lease: Lease): Promise<void> {
    const r = await this.run.update2(this.k(lease.uploadId), lease.token, Date.now(), 'state', 'open');
    if (codeOf('update2', Update, r) === 'ok') await this.releaseLease(lease);
  }

  /** Removes a finished session (and its lease), or keeps it as a record of its outcome. */
  async finish(lease: Lease, record?: FinishRecord): Promise<void> {
    const k = this.k(lease.uploadId);
    const r = record ? await this.run.finish2(k, lease.token, record.result, record.retainMs) : await this.run.finish2(k, lease.token);
    this.underLease('finish2', Finish, r, lease);
    await this.redis.zrem(this.keys.uploadsByActivity(), lease.uploadId);
  }

  /** The outcome of a script run under the lease; throws when the lease or the session is gone. */
  private underLease<C extends { leaseLost: string }>(script: string, codes: C, r: string, lease: Lease): keyof C {
    const outcome = codeOf(script, codes, r);
    if (outcome === 'leaseLost') throw new ConcurrentWriterError('writer lease lost; query the status and resume');
    if (outcome === 'noSession') throw new NotFoundError(`upload ${lease.uploadId} no longer exists`);
    return outcome;
  }

  /** Ids of sessions whose recorded activity is older than `cutoffMs` (oldest first). */
  async idleCandidates(cutoffMs: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.uploadsByActivity(), '-inf', cutoffMs, 'LIMIT', 0, limit);
  }

  /**
   * Begins expiring a session idle since before `cutoffMs` and not leased (see beginExpiry2): from
   * now on no one can use it. 'expiring': delete its staged bytes, then call endExpiry (an expiry
   * that stops half way is finished by the next run: the session stays a candidate); 'gone': there
   * is nothing left to do; 'active': it is in use, 'pinned': a job owns its finish (either way its
   * index entry is refreshed, so it is looked at again one idle lifetime later).
   */
  async beginExpiry(id: string, cutoffMs: number, now = Date.now()): Promise<'expiring' | 'gone' | 'active' | 'pinned'> {
    const r = await this.run.beginExpiry2(this.k(id), cutoffMs, now);
    const outcome = codeOf('beginExpiry2', BeginExpiry, r);
    if (outcome === 'expiring') return 'expiring';
    if (outcome === 'gone') {
      await this.redis.zrem(this.keys.uploadsByActivity(), id);
      return 'gone';
    }
    await this.touchIndex(id, outcome === 'active' ? Number(r[1]) : now, r[2] ? Number(r[2]) : undefined);
    return outcome === 'pinned' ? 'pinned' : 'active';
  }

  /** Deletes a session whose expiry began, once its staged bytes are gone. */
  async endExpiry(id: string): Promise<void> {
    // (not expiring: it was deleted, or created again, since; either way nothing is left to delete)
    codeOf('endExpiry3', EndExpiry, await this.run.endExpiry3([...this.k(id), this.keys.uploadParts(id)]));
    await this.redis.zrem(this.keys.uploadsByActivity(), id);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.upload(id))) === 1;
  }

  /**
   * Records activity in the expiry index. The job looks at sessions active before now minus the
   * idle lifetime: a session with a deadline is placed so that it is looked at by then at the latest.
   */
  private async touchIndex(id: string, atMs: number, deadline?: number): Promise<void> {
    const score = deadline === undefined ? atMs : Math.min(atMs, deadline - this.options.idleLifetimeMs);
    await this.redis.zadd(this.keys.uploadsByActivity(), score, id);
  }
}

/** HSET's field, value... of the digests computed. */
function digestFields(digests: RecordedDigests): string[] {
  return (['sha256', ...OPTIONAL_DIGESTS] as const).flatMap((a) => (digests[a] ? [a, digests[a]] : []));
}
