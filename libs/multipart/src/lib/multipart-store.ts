import { randomBytes } from 'node:crypto';
import { ConcurrentWriterError, FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError } from '@ferry/errors';
import { type Redis, type RedisKeys, bindScripts, codeOf } from '@ferry/redis';
import type { MultipartState, MultipartUploadRequest, MultipartUploadStatus } from './model';
import { PartsFrozenError, partCount } from './model';
import * as scripts from './multipart.scripts';
import {
  AddPart,
  BeginPart,
  Complete,
  CompleteAsDuplicate,
  Create,
  Delete,
  DigestBegin,
  DigestRenew,
  DigestSave,
  EndPart,
  PartReplaced,
  RenewPart,
  State,
  Swap,
  Update,
} from './multipart.scripts';
import type { DigestRoundAnswer } from './multipart.scripts';

/** A multipart upload as stored in Redis. */
export interface MultipartUpload {
  id: string;
  owner: string;
  requestKey: string;
  request: MultipartUploadRequest;
  parts: number;
  partsState: string;
  state: MultipartState;
  startedOn: number;
  updatedOn: number;
  resultFileHandleId?: string;
  failureReason?: string;
  /** Digests of the assembled file, recorded before it is published (so a retry can finish without the staging). */
  digests?: { sha256: string; md5: string };
  /** S3: the private copy of the parts those digests are of, the one to publish (see MultipartAssembler). */
  snapshot?: string;
  /** The handle id a dedup at start chose, recorded before the handle is made (see MultipartService.dedup). */
  dedupHandleId?: string;
  /** How far the whole-file digests got (see DigestProgress): the leading parts they cover, and their saved state. */
  digest: { parts: number; state?: string };
}

/** A round of DigestProgress: the saved state, and the parts it hashes next under the digest lease. */
export interface DigestRoundInfo {
  /** The digest state after parts 1..hashed ('' = nothing hashed yet). */
  state: string;
  hashed: number;
  /** Changes whenever a part the digests cover or may be reading changes (the round then saves nothing). */
  epoch: string;
  /** The round hashes parts hashed+1..upTo. */
  upTo: number;
  /** S3: the private copy of the hashed bytes (what is published), a staging id. */
  snapshot?: string;
  /** The digest lease's fence: grows with every holder; what it writes to the private copy carries it. */
  fence: number;
}

export type DigestBeginOutcome =
  | { outcome: 'round'; round: DigestRoundInfo }
  | { outcome: 'nothing'; hashed: number }
  | { outcome: 'busy'; retryMs: number }
  | { outcome: 'settled'; state?: MultipartState };

export type DigestSaveOutcome =
  | { outcome: 'round'; round: DigestRoundInfo }
  | { outcome: 'released' }
  | { outcome: 'lost' }
  | { outcome: 'stale' }
  | { outcome: 'settled'; state?: MultipartState };

/** The lease of one part's PUT. */
export interface PartLease {
  uploadId: string;
  partNumber: number;
  holder: string;
}

export type AddPartOutcome = { ok: true } | { ok: false; reason: string };

const SNAPSHOT_SUFFIX = /-snap-[0-9a-f]{12}$/;

/** The session fields `get` reads. */
const FIELDS = [
  'protocol',
  'owner',
  'attributes',
  'state',
  'outcome',
  'createdAt',
  'updatedAt',
  'resultFileHandleId',
  'failureReason',
  'sha256',
  'md5',
  'snapshot',
  'dedupHandleId',
  'dgParts',
  'dgState',
] as const;

/** The session protocol of multipart uploads. */
const PROTOCOL = 'multipart';

/** A multipart session's attributes: its start request (JSON) and the key of the user's request index it is under. */
interface MultipartAttributes {
  requestKey: string;
  request: string;
}

/** The protocol's state of a session in stored state `state` (see multipart.scripts.ts), undefined if it is none. */
function multipartState(state: string | undefined, outcome: string | undefined): MultipartState | undefined {
  if (state === 'open') return 'UPLOADING';
  if (state === 'publishing') return 'ASSEMBLING';
  if (state === 'finished' && (outcome === 'COMPLETED' || outcome === 'FAILED')) return outcome;
  return undefined;
}

export interface MultipartStoreOptions {
  /** Idle uploads are removed after this long (the key lifetime is twice that, as a safety net). */
  idleLifetimeMs: number;
  leaseTtlMs: number;
}

/**
 * Multipart uploads in Redis. Each is an upload session (libs/sessions) written as ranges: the
 * session's hash (its state, activity, writer lease and fence, the digests, and the multipart
 * fields: see multipart.scripts.ts), its partsState string and a lease key per part being PUT,
 * under the upload's hash tag; it expires as every session does (UploadExpiry, with
 * MultipartExpiryHook). Per user: the index of start requests (idempotent start) and of completed
 * files (dedup). Shared by every replica; no state in the process.
 */
export class MultipartStore {
  private readonly run;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    readonly options: MultipartStoreOptions,
  ) {
    const { create2, beginPart3, renewPart3, endPart3, abortPart3, addPart3, complete2, update2, claimField2 } = scripts;
    const { compareAndSetField1, completeAsDuplicate2, deleteIf2 } = scripts;
    const { digestBegin3, digestSave3, digestRenew3, digestRelease3, partReplaced3 } = scripts;
    this.run = bindScripts(redis, {
      digestBegin3,
      digestSave3,
      digestRenew3,
      digestRelease3,
      partReplaced3,
      create2,
      beginPart3,
      renewPart3,
      endPart3,
      abortPart3,
      addPart3,
      complete2,
      update2,
      claimField2,
      compareAndSetField1,
      completeAsDuplicate2,
      deleteIf2,
    });
  }

  static newUploadId(): string {
    return `mp_${randomBytes(15).toString('base64url')}`;
  }

  /** A staging id for a private copy of an upload's parts (see MultipartAssembler); `exists` answers for it. */
  static snapshotId(uploadId: string): string {
    return `${uploadId}-snap-${randomBytes(6).toString('hex')}`;
  }

  private k(id: string): [string, string] {
    return [this.keys.upload(id), this.keys.uploadParts(id)];
  }

  private kl(id: string, n: number): [string, string, string] {
    return [...this.k(id), this.keys.uploadPartLease(id, n)];
  }

  private kd(id: string): [string, string, string] {
    return [...this.k(id), this.keys.uploadLease(id)];
  }

  private get keyTtlMs(): number {
    return this.options.idleLifetimeMs * 2;
  }

  private t(): [number, number] {
    return [Date.now(), this.keyTtlMs];
  }

  async create(id: string, owner: string, requestKey: string, request: MultipartUploadRequest): Promise<void> {
    const parts = partCount(request.fileSizeBytes, request.partSizeBytes);
    const now = Date.now();
    const attributes: MultipartAttributes = { requestKey, request: JSON.stringify(request) };
    const fields = ['name', request.fileName, 'protocol', PROTOCOL, 'owner', owner, 'attributes', JSON.stringify(attributes)];
    const created = await this.run.create2(this.k(id), now, this.keyTtlMs, parts, ...fields);
    if (codeOf('create2', Create, created) !== 'created') throw new InternalError(`upload id ${id} already exists`);
    await this.touchIndex(id, now);
  }

  async get(id: string): Promise<MultipartUpload | undefined> {
    const [meta, parts] = this.k(id);
    // (the fields it reads, not HGETALL: the hash also holds an md5 per part)
    const r = await this.redis
      .multi()
      .hmget(meta, ...FIELDS)
      .get(parts)
      .exec();
    if (!r) throw new InternalError('transaction aborted');
    for (const [err] of r) if (err) throw err;
    const values = r[0][1] as (string | null)[];
    const h = Object.fromEntries(FIELDS.map((f, i) => [f, values[i] ?? undefined])) as Record<(typeof FIELDS)[number], string | undefined>;
    const state = multipartState(h.state, h.outcome);
    if (!state || h.protocol !== PROTOCOL || !h.owner) return undefined;
    const attributes = JSON.parse(h.attributes ?? '{}') as MultipartAttributes;
    const partsState = (r[1][1] as string | null) ?? '';
    return {
      id,
      owner: h.owner,
      requestKey: attributes.requestKey,
      request: JSON.parse(attributes.request) as MultipartUploadRequest,
      parts: partsState.length,
      partsState,
      state,
      startedOn: Number(h.createdAt),
      updatedOn: Number(h.updatedAt),
      resultFileHandleId: h.resultFileHandleId,
      failureReason: h.failureReason,
      digests: h.sha256 && h.md5 ? { sha256: h.sha256, md5: h.md5 } : undefined,
      snapshot: h.snapshot,
      dedupHandleId: h.dedupHandleId,
      digest: { parts: Number(h.dgParts ?? 0), ...(h.dgState ? { state: h.dgState } : {}) },
    };
  }

  // --- whole-file digests as parts land (see DigestProgress) ---------------------------------------

  /**
   * Takes (or, held by `holder` already, renews) the upload's digest lease for a round over the
   * parts added past those hashed, at most `maxParts`; `snapshot` is the private copy's id to record
   * if none is (S3), '' for none.
   */
  async digestBegin(id: string, holder: string, leaseMs: number, maxParts: number, snapshot: string): Promise<DigestBeginOutcome> {
    const r = await this.run.digestBegin3(this.kd(id), ...this.t(), holder, leaseMs, maxParts, snapshot);
    switch (codeOf('digestBegin3', DigestBegin, r)) {
      case 'round':
        return { outcome: 'round', round: roundOf(r) };
      case 'nothing':
        return { outcome: 'nothing', hashed: Number(r[1]) };
      case 'busy':
        return { outcome: 'busy', retryMs: Math.max(1, Number(r[1])) };
      case 'settled':
        return { outcome: 'settled', state: stateIn('digestBegin3', r[1]) };
      case 'noUpload':
        return { outcome: 'settled' };
    }
  }

  /**
   * Saves the digest state after `hashed` parts, if `holder` holds the lease and nothing changed
   * since `round` began; then the next round (lease kept) or the lease released.
   */
  async digestSave(
    id: string,
    holder: string,
    leaseMs: number,
    maxParts: number,
    round: DigestRoundInfo,
    hashed: number,
    state: string,
  ): Promise<DigestSaveOutcome> {
    const args = [holder, leaseMs, maxParts, round.epoch, round.hashed, hashed, state] as const;
    const r = await this.run.digestSave3(this.kd(id), ...this.t(), ...args);
    switch (codeOf('digestSave3', DigestSave, r)) {
      case 'round':
        return { outcome: 'round', round: roundOf(r) };
      case 'released':
        return { outcome: 'released' };
      case 'lost':
        return { outcome: 'lost' };
      case 'stale':
        return { outcome: 'stale' };
      case 'settled':
        return { outcome: 'settled', state: stateIn('digestSave3', r[1]) };
      case 'noUpload':
        return { outcome: 'settled' };
    }
  }

  async digestRenew(id: string, holder: string, leaseMs: number): Promise<void> {
    const r = await this.run.digestRenew3(this.kd(id), ...this.t(), holder, leaseMs);
    if (codeOf('digestRenew3', DigestRenew, r) === 'lost') throw new ConcurrentWriterError(`the digest lease of upload ${id} was lost`);
  }

  async digestRelease(id: string, holder: string): Promise<void> {
    await this.run.digestRelease3(this.kd(id), ...this.t(), holder);
  }

  /** The md5s parts `from`..`to` were added with (S3: what the bucket must still hold). */
  async addedMd5s(id: string, from: number, to: number): Promise<(string | undefined)[]> {
    if (to < from) return [];
    const fields = Array.from({ length: to - from + 1 }, (_, i) => `s:${from + i}`);
    return (await this.redis.hmget(this.keys.upload(id), ...fields)).map((v) => v ?? undefined);
  }

  /**
   * S3: part `n`, added with md5 `added`, is now `observed` in the bucket (PUT again since): missing
   * again while UPLOADING ('missing', or 'unchanged' if it moved on meanwhile); 'frozen' once complete was called.
   */
  async partReplaced(id: string, n: number, added: string, observed: string): Promise<'missing' | 'unchanged' | 'frozen' | 'gone'> {
    const r = await this.run.partReplaced3(this.kl(id, n), ...this.t(), n, added, observed);
    const outcome = codeOf('partReplaced3', PartReplaced, r);
    return outcome === 'noUpload' ? 'gone' : outcome;
  }

  /** Just the state of an upload (cheap to poll), or undefined if there is none. */
  async stateOf(id: string): Promise<MultipartState | undefined> {
    const [state, outcome] = await this.redis.hmget(this.keys.upload(id), 'state', 'outcome');
    return multipartState(state ?? undefined, outcome ?? undefined);
  }

  /** Takes part `n`'s PUT lease and marks the part missing until the PUT ends. */
  async beginPart(id: string, n: number): Promise<PartLease> {
    const holder = randomBytes(9).toString('base64url');
    const r = await this.run.beginPart3(this.kl(id, n), ...this.t(), n, holder, this.options.leaseTtlMs);
    const outcome = codeOf('beginPart3', BeginPart, r);
    if (outcome === 'noUpload') throw new NotFoundError(`upload ${id} not found`);
    if (outcome === 'noSuchPart') throw new InvalidArgumentError(`part number ${n} is out of range: this upload has parts 1 to ${r[1]}`);
    if (outcome === 'frozen') throw new FailedPreconditionError(`upload ${id} is ${r[1]}: its parts can no longer change`);
    if (outcome === 'held') {
      throw new ConcurrentWriterError(
        `another PUT of part ${n} is in progress; retry in ${Math.ceil(Number(r[1]) / 1000)} s or when it ends`,
      );
    }
    await this.touchIndex(id, Date.now());
    return { uploadId: id, partNumber: n, holder };
  }

  async renewPart(lease: PartLease): Promise<void> {
    const ok = await this.run.renewPart3(
      this.kl(lease.uploadId, lease.partNumber),
      ...this.t(),
      lease.partNumber,
      lease.holder,
      this.options.leaseTtlMs,
    );
    if (codeOf('renewPart3', RenewPart, ok) === 'lost')
      throw new ConcurrentWriterError(`the PUT of part ${lease.partNumber} lost its lease; PUT the part again`);
  }

  /** Records the md5 of the part's durable bytes and releases the lease. */
  async endPart(lease: PartLease, md5: string): Promise<void> {
    const r = await this.run.endPart3(this.kl(lease.uploadId, lease.partNumber), ...this.t(), lease.partNumber, lease.holder, md5);
    const outcome = codeOf('endPart3', EndPart, r);
    if (outcome === 'noUpload') throw new NotFoundError(`upload ${lease.uploadId} no longer exists`);
    if (outcome === 'lost') throw new ConcurrentWriterError(`the PUT of part ${lease.partNumber} lost its lease; PUT the part again`);
    await this.touchIndex(lease.uploadId, Date.now());
  }

  async abortPart(lease: PartLease): Promise<void> {
    await this.run.abortPart3(this.kl(lease.uploadId, lease.partNumber), ...this.t(), lease.partNumber, lease.holder);
  }

  /**
   * Adds part `n` if its stored bytes have `md5`; `observed` is the md5 the store reports for them
   * (direct parts). InvalidArgumentError, and nothing changes, unless `n` is one of the upload's parts.
   */
  async addPart(id: string, n: number, md5: string, observed = ''): Promise<AddPartOutcome> {
    const r = await this.run.addPart3(this.kl(id, n), ...this.t(), n, md5, observed);
    switch (codeOf('addPart3', AddPart, r)) {
      case 'added':
        await this.touchIndex(id, Date.now());
        return { ok: true };
      case 'noUpload':
        throw new NotFoundError(`upload ${id} not found`);
      case 'noSuchPart':
        throw new InvalidArgumentError(`part number ${n} is out of range: this upload has parts 1 to ${r[1]}`);
      case 'frozen':
        throw new PartsFrozenError(id, stateIn('addPart3', r[1]));
      case 'putInProgress':
        return { ok: false, reason: `a PUT of part ${n} is in progress; add the part when it has finished` };
      case 'noBytes':
        return { ok: false, reason: `no bytes are stored for part ${n}: PUT them to a presigned URL first` };
      case 'md5Differs':
        return { ok: false, reason: `the MD5 of the stored bytes of part ${n} is ${r[1]}, not ${md5}; PUT the part again` };
    }
  }

  /** Moves to ASSEMBLING when every part is added; returns the state afterwards or the missing part numbers. */
  async complete(id: string): Promise<{ state: MultipartState } | { missing: number[] }> {
    const r = await this.run.complete2(this.k(id), ...this.t());
    const outcome = codeOf('complete2', Complete, r);
    if (outcome === 'noUpload') throw new NotFoundError(`upload ${id} not found`);
    if (outcome === 'missing') {
      const missing: number[] = [];
      for (let i = 0; i < (r[1] ?? '').length; i++) if (r[1]?.[i] === '0') missing.push(i + 1);
      return { missing };
    }
    await this.touchIndex(id, Date.now());
    return { state: stateIn('complete2', r[1]) };
  }

  /**
   * The assembly job of an ASSEMBLING upload gave up (its retries spent): the upload is no longer
   * pinned, so it expires as an idle one does, unless a complete revives it.
   */
  async assemblyGaveUp(id: string): Promise<void> {
    if (await this.updateIf(id, 'ASSEMBLING', { pinned: 0 })) await this.touchIndex(id, Date.now());
  }

  /** If the upload is in state `from`: moves it to state `to` (if given) and sets fields; returns whether it was. */
  async updateIf(id: string, from: MultipartState, fields: Record<string, string | number>, to?: MultipartState): Promise<boolean> {
    const r = await this.run.update2(this.k(id), ...this.t(), from, to ?? '', ...Object.entries(fields).flat());
    const done = codeOf('update2', Update, r) === 'done';
    // a state change (an assembly settling, say) makes the upload a candidate for expiry again
    if (done && to) await this.touchIndex(id, Date.now());
    return done;
  }

  /** Completes an upload at start as a copy of a file the user already uploaded. */
  async completeAsDuplicate(id: string, handleId: string, originalHandleId: string): Promise<boolean> {
    const r = await this.run.completeAsDuplicate2(this.k(id), ...this.t(), handleId, originalHandleId);
    return codeOf('completeAsDuplicate2', CompleteAsDuplicate, r) === 'done';
  }

  /** The handle id of the upload's dedup, recording `candidate` if none is recorded yet (undefined unless UPLOADING). */
  claimDedupHandle(id: string, candidate: string): Promise<string | undefined> {
    return this.claimField(id, 'UPLOADING', 'dedupHandleId', candidate);
  }

  /** The upload's file handle id, recording `candidate` if none is recorded yet (undefined unless ASSEMBLING). */
  claimHandle(id: string, candidate: string): Promise<string | undefined> {
    return this.claimField(id, 'ASSEMBLING', 'handleId', candidate);
  }

  private async claimField(id: string, state: MultipartState, field: string, candidate: string): Promise<string | undefined> {
    const r = await this.run.claimField2(this.k(id), ...this.t(), state, field, candidate);
    return r === '' ? undefined : r;
  }

  /**
   * What an expiring upload leaves besides its staged parts (see MultipartExpiryHook): its entry in
   * the user's request index, the handle of a dedup that did not finish if it was still UPLOADING,
   * and on S3 a private copy of its hashed parts (`snapshot`). Undefined if it is not an expiring
   * multipart upload.
   */
  async expiring(id: string): Promise<{ owner: string; requestKey: string; unusedHandleId?: string; snapshot?: string } | undefined> {
    const [protocol, state, from, owner, attributes, dedupHandleId, snapshot] = await this.redis.hmget(
      this.keys.upload(id),
      'protocol',
      'state',
      'expiredFrom',
      'owner',
      'attributes',
      'dedupHandleId',
      'snapshot',
    );
    if (protocol !== PROTOCOL || state !== 'expiring' || !owner) return undefined;
    const { requestKey } = JSON.parse(attributes ?? '{}') as MultipartAttributes;
    return {
      owner,
      requestKey,
      ...(from === 'open' && dedupHandleId ? { unusedHandleId: dedupHandleId } : {}),
      ...(snapshot ? { snapshot } : {}),
    };
  }

  /** Forgets the start request of an expired upload (unless it points at another upload by now). */
  async forgetRequest(id: string, owner: string, requestKey: string): Promise<void> {
    await this.compareAndSet(this.keys.multipartRequests(owner), requestKey, id, '');
  }

  /** Whether the upload lives (the staging sweep asks, also for the upload's snapshots). */
  async exists(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.upload(id.replace(SNAPSHOT_SUFFIX, '')))) === 1;
  }

  /** Deletes an upload if it is still in state `state`; returns whether it did. */
  async deleteIf(id: string, state: MultipartState): Promise<boolean> {
    if (codeOf('deleteIf2', Delete, await this.run.deleteIf2(this.k(id), ...this.t(), state)) !== 'deleted') return false;
    await this.redis.zrem(this.keys.uploadsByActivity(), id);
    return true;
  }

  /** Deletes an upload outright (abandoned by forceRestart, or lost a start race). */
  async delete(id: string): Promise<void> {
    await this.redis.del(...this.k(id));
    await this.redis.zrem(this.keys.uploadsByActivity(), id);
  }

  // --- per-user indexes -------------------------------------------------------------------------

  async uploadForRequest(owner: string, requestKey: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.multipartRequests(owner), requestKey)) ?? undefined;
  }

  /** Points the request at `next` if it currently points at `expected` ('' = nothing); else returns the current upload id. */
  async swapRequest(
    owner: string,
    requestKey: string,
    expected: string,
    next: string,
  ): Promise<{ ok: true } | { ok: false; current?: string }> {
    const r = await this.compareAndSet(this.keys.multipartRequests(owner), requestKey, expected, next);
    return r.swapped ? { ok: true } : { ok: false, current: r.current || undefined };
  }

  async dedupLookup(owner: string, md5: string, size: number): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.multipartDedup(owner), `${md5}:${size}`)) ?? undefined;
  }

  async dedupRecord(owner: string, md5: string, size: number, handleId: string): Promise<void> {
    await this.redis.hset(this.keys.multipartDedup(owner), `${md5}:${size}`, handleId);
  }

  async dedupForget(owner: string, md5: string, size: number, handleId: string): Promise<void> {
    await this.compareAndSet(this.keys.multipartDedup(owner), `${md5}:${size}`, handleId, '');
  }

  private async compareAndSet(key: string, field: string, expected: string, next: string): Promise<{ swapped: boolean; current?: string }> {
    const r = await this.run.compareAndSetField1([key], field, expected, next);
    return codeOf('compareAndSetField1', Swap, r) === 'swapped' ? { swapped: true } : { swapped: false, current: r[1] };
  }

  private async touchIndex(id: string, atMs: number): Promise<void> {
    await this.redis.zadd(this.keys.uploadsByActivity(), atMs, id);
  }
}

function roundOf(r: DigestRoundAnswer): DigestRoundInfo {
  const [, state, hashed, epoch, upTo, snapshot, fence] = r;
  return {
    state: String(state ?? ''),
    hashed: Number(hashed),
    epoch: String(epoch),
    upTo: Number(upTo),
    fence: Number(fence ?? 0),
    ...(snapshot ? { snapshot } : {}),
  };
}

/** The state a script answered (one it never should is an InternalError, as codeOf reports). */
function stateIn(script: string, answered: string | number | undefined): MultipartState {
  return codeOf(script, State, answered);
}

/** The wire form of an upload's status. */
export function toStatus(u: MultipartUpload): MultipartUploadStatus {
  const s: MultipartUploadStatus = {
    uploadId: u.id,
    startedBy: u.owner,
    startedOn: new Date(u.startedOn).toISOString(),
    updatedOn: new Date(u.updatedOn).toISOString(),
    partsState: u.partsState,
    state: u.state,
  };
  if (u.state === 'COMPLETED' && u.resultFileHandleId) s.resultFileHandleId = u.resultFileHandleId;
  if (u.state === 'FAILED' && u.failureReason) s.errorMessage = u.failureReason;
  return s;
}
