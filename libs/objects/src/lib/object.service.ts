import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Authenticator, Principal, SignedRequest, UrlSigner } from '@ferry/auth';
import { type CatalogObject, assertClientWritable } from '@ferry/catalog';
import { AlreadyExistsError, ConcurrentWriterError, InvalidArgumentError, NotFoundError, UnavailableError } from '@ferry/errors';
import { type Redis, type RedisKeys, bindScripts, codeOf } from '@ferry/redis';
import type { DirectAccess, StagingFile, Storage } from '@ferry/storage';
import { BatchedWriter, InlineHasher, LeaseKeeper, StreamDigests, UploadEngine, interruptible } from '@ferry/uploads';
import type { Digests, HashPool } from '@ferry/uploads';
import {
  BeginPut,
  ClaimFinish,
  Create,
  Declare,
  FINISHING,
  Lease,
  RecordPut,
  SetIfAbsent,
  UpdateIfUpload,
  beginPut2,
  claimFinish2,
  createIfAbsent2,
  declareHashes2,
  lease1,
  recordPut2,
  setIfAbsent1,
  updateIfUpload2,
} from './object.scripts';
import {
  CreateUploadResponse,
  DownloadResponse,
  Hashes,
  InputError,
  NoMatchingMethodError,
  ObjectMetadata,
  UploadMethod,
  assertObjectName,
  mergeHashes,
  parseCreateUpload,
  parseFinishUpload,
  parseStartDownload,
} from './model';

export interface ObjectServiceOptions {
  urlTtlMs: number;
  /** Lease of a PUT of the data (renewed while it runs). */
  leaseTtlMs: number;
  /** Unfinished uploads expire this long after they began (FERRY_OBJECT_UPLOAD_TTL_MS, one day). */
  uploadLifetimeMs: number;
}

/**
 * Data-plane paths (signed URLs), shared by the signer and the HTTP routes. The object name travels as base64url: a name such as `..`
 * or `a/b` must arrive as it is, whatever clients and proxies do to dot segments (URL parsers remove
 * `..` and `%2e%2e`) and to encoded slashes.
 */
export const ObjectDataPaths = {
  upload: (uploadId: string, name: string) => `/data/uploads/${uploadId}/${Buffer.from(name).toString('base64url')}`,
  object: (name: string) => `/data/objects/${Buffer.from(name).toString('base64url')}`,
  /** The object name a path segment carries; NotFoundError for one no signed URL of Ferry's holds. */
  nameOf(segment: string): string {
    const name = Buffer.from(segment, 'base64url').toString();
    if (segment === '' || Buffer.from(name).toString('base64url') !== segment) throw new NotFoundError('no such data-plane path');
    return name;
  },
};

/** Tells the staging sweep which staging objects belong to object uploads still alive. */
export class ObjectStagingOwner {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async exists(stagingId: string): Promise<boolean> {
    return stagingId.startsWith('ob_') && (await this.redis.exists(this.keys.objectStaging(stagingId))) === 1;
  }
}

export const ObjectScopes = {
  upload: (projectId: string, name: string) => `object:upload:${projectId}:${name}`,
  download: (name: string) => `object:download:${name}`,
};

/** An unfinished upload, as stored in Redis (one hash per object name, expiring with the upload). */
interface PendingUpload {
  name: string;
  projectId: string;
  uploadId: string;
  expires: string;
  owner: string;
  createdAt: number;
  hashes: Hashes;
  contentType: string;
  /** Declared length of the putUrl body (-1: none declared). */
  contentLength: number;
  /** The staging object putUrls name when they go straight to the bucket (S3). */
  directStagingId?: string;
  /**
   * What is stored, once data arrived (in the staging object `stagingId`): its sha256, and its
   * sha512 when it was declared before the bytes arrived (else finishUpload computes it if declared).
   */
  stored?: { stagingId: string; size: number; sha256: string; sha512?: string };
}

/** How long a finishUpload waits for another replica's finish of the same upload before answering 503. */
const FINISH_WAIT_MS = 30_000;

/**
 * The Taskcluster object service (docs/protocols.md, Taskcluster object service) over Ferry's catalog, transport-free.
 * Uploads negotiate `dataInline` (stored at once) or `putUrl` (a signed URL of the data plane, whose
 * PUT computes the sha256, and the sha512 if declared already, on the way); finishUpload computes a
 * sha512 declared only then, compares the declared hashes with the stored bytes' and publishes atomically; downloads negotiate `getUrl` (signed) or `simple`.
 */
export class ObjectService {
  private readonly run;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly engine: UploadEngine,
    /** Staging only (the bytes of uploads in progress); published content goes through the engine. */
    private readonly storage: Storage,
    private readonly auth: Authenticator,
    private readonly signer: UrlSigner,
    private readonly hashPool: HashPool,
    private readonly options: ObjectServiceOptions,
  ) {
    this.run = bindScripts(redis, {
      createIfAbsent2,
      updateIfUpload2,
      beginPut2,
      recordPut2,
      declareHashes2,
      setIfAbsent1,
      claimFinish2,
      lease1,
    });
  }

  async createUpload(principal: Principal, name: string, body: unknown, baseUrl: string): Promise<CreateUploadResponse> {
    assertObjectName(name);
    const req = parseCreateUpload(body);
    this.auth.require(principal, ObjectScopes.upload(req.projectId, name));
    assertClientWritable(name);
    const expires = new Date(req.expires).toISOString();
    const fresh: PendingUpload = {
      name,
      projectId: req.projectId,
      uploadId: req.uploadId,
      expires,
      owner: principal.clientId,
      createdAt: Date.now(),
      hashes: req.hashes ?? {},
      contentType:
        req.proposedUploadMethods.putUrl?.contentType ?? req.proposedUploadMethods.dataInline?.contentType ?? 'application/binary',
      contentLength: req.proposedUploadMethods.putUrl?.contentLength ?? -1,
    };
    const existing = await this.createPending(fresh);
    const upload = existing ?? fresh;
    if (existing) {
      if (existing.uploadId !== req.uploadId || existing.expires !== expires || existing.projectId !== req.projectId) {
        throw new AlreadyExistsError(`another upload of ${JSON.stringify(name)} is in progress (different uploadId, projectId or expires)`);
      }
      const declared = await this.run.declareHashes2(this.uploadKeys(name), existing.uploadId, JSON.stringify(req.hashes ?? {}));
      const outcome = codeOf('declareHashes2', Declare, declared);
      if (outcome === 'finishing') throw beingFinished(name);
      if (outcome === 'gone') throw new AlreadyExistsError(`the upload of ${JSON.stringify(name)} ended meanwhile; create it again`);
      if (outcome === 'conflict') throw new AlreadyExistsError(`${declared[1]} differs from the one already declared`);
    }

    let uploadMethod: UploadMethod = {};
    const inline = req.proposedUploadMethods.dataInline;
    const put = req.proposedUploadMethods.putUrl;
    if (inline) {
      // (its size was validated with the body: at most DATA_INLINE_MAX_BYTES)
      await this.store(upload, Buffer.from(inline.objectData, 'base64'), inline.contentType);
      uploadMethod = { dataInline: true };
    } else if (put && this.storage.direct && put.contentLength <= this.storage.direct.maxPartBytes) {
      uploadMethod = { putUrl: await this.directPutUrl(upload, put) };
    } else if (put) {
      const expiresAt = Math.floor((Date.now() + this.options.urlTtlMs) / 1000);
      const headers = { 'Content-Type': put.contentType, 'Content-Length': String(put.contentLength) };
      const path = ObjectDataPaths.upload(upload.uploadId, name);
      const url = `${baseUrl}${path}?${this.signer.sign({ method: 'PUT', path, expiresAt, headers: { 'Content-Type': put.contentType } })}`;
      await this.update(upload, { contentType: put.contentType, contentLength: put.contentLength });
      uploadMethod = { putUrl: { url, expires: new Date(expiresAt * 1000).toISOString(), headers } };
    }
    return { projectId: upload.projectId, uploadId: upload.uploadId, expires, uploadMethod };
  }

  /**
   * A putUrl straight to the bucket (S3). Every URL of one upload names the same staging object, so
   * a renewed URL and a PUT again replace the bytes as S3 does (the last complete PUT wins); Ferry
   * sees no PUT, so finishUpload reads the bytes back to verify them.
   */
  private async directPutUrl(
    upload: PendingUpload,
    put: { contentType: string; contentLength: number },
  ): Promise<{ url: string; expires: string; headers: Record<string, string> }> {
    const direct = this.storage.direct as DirectAccess;
    let stagingId = upload.directStagingId;
    if (!stagingId) {
      stagingId = `ob_${randomBytes(15).toString('base64url')}`;
      await this.redis.set(this.keys.objectStaging(stagingId), upload.name, 'PX', this.options.uploadLifetimeMs);
      const won = await this.run.setIfAbsent1([this.keys.objectUpload(upload.name)], upload.uploadId, 'directStagingId', stagingId);
      if (codeOf('setIfAbsent1', SetIfAbsent, won) !== 'set') {
        await this.redis.del(this.keys.objectStaging(stagingId));
        const current = await this.pending(upload.name);
        if (!current?.directStagingId || current.uploadId !== upload.uploadId)
          throw new NotFoundError(`no upload ${upload.uploadId} of ${JSON.stringify(upload.name)} in progress`);
        stagingId = current.directStagingId;
      }
    }
    const expiresInSeconds = Math.floor(this.options.urlTtlMs / 1000);
    const { url } = await direct.stagingPartPutUrl(stagingId, 0, {
      contentLength: put.contentLength,
      contentType: put.contentType,
      expiresInSeconds,
    });
    await this.update(upload, { contentType: put.contentType, contentLength: put.contentLength });
    return {
      url,
      expires: new Date(Date.now() + expiresInSeconds * 1000).toISOString(),
      headers: { 'Content-Type': put.contentType, 'Content-Length': String(put.contentLength) },
    };
  }

  /**
   * What a client PUT straight to the bucket, hashed now (Ferry did not see the bytes arrive). The
   * bytes are first copied, inside the store, to a staging object no URL names: a PUT racing the
   * finish can then change neither what is verified nor what is published.
   */
  private async directStored(upload: PendingUpload, declared: Hashes): Promise<PendingUpload['stored']> {
    const direct = this.storage.direct;
    if (!upload.directStagingId || !direct) return undefined;
    const stagingId = `ob_${randomBytes(15).toString('base64url')}`;
    await this.redis.set(this.keys.objectStaging(stagingId), upload.name, 'PX', this.options.uploadLifetimeMs);
    const size = await direct.snapshotStaging(upload.directStagingId, stagingId);
    if (size === undefined) {
      await this.redis.del(this.keys.objectStaging(stagingId));
      return undefined;
    }
    try {
      if (upload.contentLength >= 0 && size !== upload.contentLength) {
        throw new AlreadyExistsError(
          `the uploaded data has ${size} bytes, not the declared contentLength ${upload.contentLength}; PUT it again`,
        );
      }
      const algos: ('sha256' | 'sha512')[] = declared.sha512 ? ['sha256', 'sha512'] : ['sha256'];
      const { sha256, sha512 } = await this.hashPool.digestOf(algos, this.storage.readStaging(stagingId, 0, size));
      return { stagingId, size, sha256, ...(sha512 ? { sha512 } : {}) };
    } catch (err) {
      await this.dropStaging(stagingId).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Data plane: the PUT of a putUrl. Streams to staging, computing on the way the sha256 and, if
   * createUpload declared one, the sha512 (digests by need: a sha512 declared only at finishUpload
   * is computed then, in one pass over the staged bytes).
   */
  async putData(uploadId: string, name: string, signed: SignedRequest, body: AsyncIterable<Buffer>): Promise<void> {
    this.signer.verifyRequest(signed);
    const upload = await this.pending(name);
    if (!upload || upload.uploadId !== uploadId) throw new NotFoundError(`no upload ${uploadId} of ${JSON.stringify(name)} in progress`);
    await this.replaceData(upload, async (file, keeper, replaced) => {
      const hasher = new StreamDigests(this.hashPool, upload.hashes.sha512 ? ['sha512'] : []);
      const out = new BatchedWriter(file, 0, hasher.written, () => keeper.check());
      try {
        // a client that stalls while a newer PUT takes over hears 409 at once, not at its next byte
        for await (const chunk of interruptible(body[Symbol.asyncIterator](), replaced)) {
          if (upload.contentLength >= 0 && out.received + chunk.length > upload.contentLength) {
            throw new InvalidArgumentError(`the body is longer than the declared contentLength ${upload.contentLength}`);
          }
          hasher.arrived(chunk);
          await out.push(chunk);
        }
        const size = await out.finish();
        if (upload.contentLength >= 0 && size !== upload.contentLength) {
          throw new InvalidArgumentError(`the body has ${size} bytes, not the declared contentLength ${upload.contentLength}`);
        }
        return digestFields(size, await hasher.digest());
      } catch (err) {
        hasher.dispose();
        await out.settle();
        throw err;
      }
    });
  }

  async finishUpload(principal: Principal, name: string, body: unknown): Promise<Record<string, never>> {
    assertObjectName(name);
    const req = parseFinishUpload(body);
    this.auth.require(principal, ObjectScopes.upload(req.projectId, name));
    for (let attempt = 0, changed = 0; ; attempt++) {
      const upload = await this.pending(name);
      if (!upload) return this.finishedAlready(name, req.projectId, req.hashes);
      if (upload.projectId !== req.projectId)
        throw new InputError(`object ${JSON.stringify(name)} does not have projectId ${req.projectId}`);
      if (upload.uploadId !== req.uploadId) throw new AlreadyExistsError('uploadId does not match the upload in progress');
      const { merged, conflict } = mergeHashes(upload.hashes, req.hashes);
      if (conflict) throw new AlreadyExistsError(`${conflict} differs from the one already declared`);
      const outcome = await this.finishPending(upload, merged);
      if (outcome === 'finished') return {};
      // a createUpload declared another hash since it was read: read the upload again
      if (outcome === 'again' && ++changed < 5) {
        attempt--;
        continue;
      }
      // another replica is finishing it (a client retry): once it is done, answer as for a finished object
      if (attempt > 0 || !(await this.waitForLease(this.putLease(name), FINISH_WAIT_MS))) {
        throw new UnavailableError(`the upload of ${JSON.stringify(name)} is being finished elsewhere; try again`);
      }
    }
  }

  /** finishUpload of a name with no upload in progress: accepted again if the object agrees. */
  private async finishedAlready(name: string, projectId: string, hashes: Hashes | undefined): Promise<Record<string, never>> {
    const object = await this.liveObject(name);
    if (!object) throw new NotFoundError(`no object or upload named ${JSON.stringify(name)}`);
    if (object.project !== projectId) throw new InputError(`object ${JSON.stringify(name)} does not have projectId ${projectId}`);
    const known: Hashes = { sha256: object.sha256, ...(object.sha512 ? { sha512: object.sha512 } : {}) };
    if (mergeHashes(known, hashes).conflict) throw new AlreadyExistsError('the object is finished with different hashes');
    return {};
  }

  /**
   * Verifies and publishes what is stored for `upload`, holding its lease as a finisher: no PUT,
   * createUpload or other finish changes the upload meanwhile. 'elsewhere' when another finish
   * holds the lease.
   */
  private async finishPending(upload: PendingUpload, declared: Hashes): Promise<'finished' | 'elsewhere' | 'again'> {
    const { name } = upload;
    const lease = this.putLease(name);
    // the lease is someone else's: another finish (wait for it), or a PUT
    const heldBy = (holder: string | null): 'elsewhere' => {
      if (holder?.startsWith(FINISHING)) return 'elsewhere';
      throw new AlreadyExistsError(
        holder ? 'a PUT of this object is in progress; finish it first' : 'no data was uploaded for this object yet',
      );
    };
    const data = upload.stored ?? (await this.directStored(upload, declared));
    if (!data) return heldBy(await this.redis.get(lease));
    // a snapshot of bytes PUT to the bucket is ours alone: nothing else will remove it
    const dropSnapshot = async () => {
      if (!upload.stored) await this.dropStaging(data.stagingId).catch(() => undefined);
    };
    const holder = `${FINISHING}${randomBytes(9).toString('base64url')}`;
    const takenAt = performance.now();
    const claim = await this.run.claimFinish2(
      this.uploadKeys(name),
      upload.uploadId,
      holder,
      this.options.leaseTtlMs,
      upload.stored ? data.stagingId : '',
      JSON.stringify(upload.hashes),
    );
    const claimed = codeOf('claimFinish2', ClaimFinish, claim);
    if (claimed !== 'claimed') {
      await dropSnapshot();
      if (claimed === 'gone') return 'elsewhere'; // finished (or replaced) since it was read: look again
      if (claimed === 'redeclared') return 'again';
      if (claimed === 'replaced') throw new AlreadyExistsError('the uploaded data was replaced while finishing; finish again');
      return heldBy(claim[1] ?? '');
    }
    const keeper = this.keepLease(lease, holder, takenAt, 'the finish lost its lease', 'this finish may have lost its lease; finish again');
    let published = false;
    try {
      // (a snapshot of direct PUTs was just measured; bytes PUT through Ferry may have been cut since,
      // or already published by a finish that failed after moving them: then the blob has them)
      if (
        upload.stored &&
        (await this.storage.stagingSize(data.stagingId)) !== data.size &&
        !(await this.engine.hasBlob(data.sha256, data.size))
      ) {
        throw new AlreadyExistsError('the uploaded data is incomplete; PUT it again');
      }
      if (declared.sha512 !== undefined && data.sha512 === undefined) data.sha512 = await this.sha512Of(data, keeper);
      for (const algo of ['sha256', 'sha512'] as const) {
        if (declared[algo] !== undefined && declared[algo] !== data[algo]) {
          throw new InputError(`the uploaded data's ${algo} is ${data[algo]}, not the declared ${declared[algo]}; nothing was published`);
        }
      }
      keeper.check(); // last point where giving up leaves the staged bytes as they were
      await this.engine.storeStaged(data.stagingId, data.sha256, name);
      await this.engine.publish({
        name,
        size: data.size,
        sha256: data.sha256,
        ...(data.sha512 ? { sha512: data.sha512 } : {}),
        contentType: upload.contentType,
        owner: upload.owner,
        project: upload.projectId,
        createdAt: new Date().toISOString(),
        expires: upload.expires,
        protocol: 'object',
        blob: data.sha256,
      });
      published = true;
      await this.redis.del(this.keys.objectUpload(name), lease);
    } catch (err) {
      if (!published) await dropSnapshot();
      throw err;
    } finally {
      keeper.stop();
      if (!published) await this.releaseLease(lease, holder);
    }
    await this.redis.del(this.keys.objectStaging(data.stagingId));
    // what clients PUT to the bucket was copied before it was verified; the original goes now
    if (upload.directStagingId) await this.dropStaging(upload.directStagingId).catch(() => undefined);
    return 'finished';
  }

  /** Keeps the upload's lease (a PUT's or a finisher's) renewed in the background while `holder` works. */
  private keepLease(
    lease: string,
    holder: string,
    takenAt: number,
    replaced: string,
    mayHaveLost: string,
    onLost?: (err: unknown) => void,
  ): LeaseKeeper {
    const renew = async () => {
      const renewed = await this.run.lease1([lease], holder, this.options.leaseTtlMs);
      if (codeOf('lease1', Lease, renewed) === 'lost') throw new ConcurrentWriterError(replaced);
    };
    return new LeaseKeeper(renew, this.options.leaseTtlMs, takenAt, mayHaveLost, onLost);
  }

  /** Waits until `lease` is released or has expired; false if it is still held after `ms`. */
  private async waitForLease(lease: string, ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    while ((await this.redis.exists(lease)) === 1) {
      if (performance.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  async startDownload(principal: Principal, name: string, body: unknown, baseUrl: string): Promise<DownloadResponse> {
    assertObjectName(name);
    const { acceptDownloadMethods: accept } = parseStartDownload(body);
    this.auth.require(principal, ObjectScopes.download(name));
    const object = await this.liveObject(name);
    if (!object) throw new NotFoundError(`no finished object named ${JSON.stringify(name)}`);
    const { url, expires } = await this.signedGet(object, baseUrl);
    if (accept.getUrl) return { method: 'getUrl', url, expires, hashes: hashesOf(object) };
    if (accept.simple) return { method: 'simple', url };
    throw new NoMatchingMethodError('none of the accepted download methods is offered (getUrl, simple)');
  }

  async metadata(principal: Principal, name: string): Promise<ObjectMetadata> {
    assertObjectName(name);
    this.auth.require(principal, ObjectScopes.download(name));
    const object = await this.liveObject(name);
    if (!object) throw new NotFoundError(`no finished object named ${JSON.stringify(name)}`);
    return { projectId: object.project, expires: object.expires ?? '9999-12-31T23:59:59.999Z', hashes: hashesOf(object) };
  }

  /** The signed URL `download` redirects to (303). */
  async downloadUrl(principal: Principal, name: string, baseUrl: string): Promise<string> {
    await this.metadata(principal, name);
    const object = await this.liveObject(name);
    if (!object) throw new NotFoundError(`no finished object named ${JSON.stringify(name)}`);
    return (await this.signedGet(object, baseUrl)).url;
  }

  /** Data plane: the bytes behind a signed GET URL. */
  async openData(name: string, signed: SignedRequest): Promise<{ object: CatalogObject; read(start: number, end: number): Readable }> {
    this.signer.verifyRequest(signed);
    const object = await this.liveObject(name);
    if (!object) throw new NotFoundError(`no finished object named ${JSON.stringify(name)}`);
    return { object, read: (start, end) => this.engine.readBlob(object.blob, start, end) };
  }

  // --- helpers ---------------------------------------------------------------------------------

  /** A finished object, unless it expired (the worker deletes it later; it is gone already). */
  private liveObject(name: string): Promise<CatalogObject | undefined> {
    return this.engine.object(name);
  }

  /** A signed GET URL of the object: presigned to the bucket itself (S3), else Ferry's data plane. */
  private async signedGet(object: CatalogObject, baseUrl: string): Promise<{ url: string; expires: string }> {
    const expiresAt = Math.floor((Date.now() + this.options.urlTtlMs) / 1000);
    const expires = new Date(expiresAt * 1000).toISOString();
    if (this.storage.direct) {
      const url = await this.storage.direct.blobGetUrl(object.blob, {
        expiresInSeconds: Math.floor(this.options.urlTtlMs / 1000),
        contentType: object.contentType,
      });
      return { url, expires };
    }
    const path = ObjectDataPaths.object(object.name);
    return {
      url: `${baseUrl}${path}?${this.signer.sign({ method: 'GET', path, expiresAt })}`,
      expires: new Date(expiresAt * 1000).toISOString(),
    };
  }

  /** dataInline: at most 8 KiB, so both digests Taskcluster's clients declare are computed at once. */
  private async store(upload: PendingUpload, data: Buffer, contentType: string): Promise<void> {
    await this.replaceData(upload, async (file) => {
      await file.write(data, 0);
      const hasher = new InlineHasher(['sha512']);
      hasher.update(data);
      return { ...digestFields(data.length, await hasher.digest()), contentType, contentLength: data.length };
    });
  }

  /**
   * The sha512 of stored bytes, declared only at finishUpload (as taskcluster-client's upload()
   * does): one pass on a pool thread, under the finish lease. Read from the staging object, or from
   * the blob when a finish that failed after publishing the bytes moved them there.
   */
  private async sha512Of(data: NonNullable<PendingUpload['stored']>, keeper: LeaseKeeper): Promise<string> {
    const staged = (await this.storage.stagingSize(data.stagingId)) === data.size;
    const chunks = staged ? this.storage.readStaging(data.stagingId, 0, data.size) : this.engine.readBlob(data.sha256, 0, data.size);
    return (await this.hashPool.digestOf(['sha512'], chunks, () => keeper.check())).sha512;
  }

  /**
   * Replaces the bytes stored for an upload; the newest call wins (see beginPut1). Each call writes
   * a staging object of its own, so a PUT still running elsewhere, or one whose process died holding
   * the lease, never mixes its bytes with these, and cannot block a client that PUTs again. Only a
   * call still holding the lease when its bytes are durable records them (`write` returns the size,
   * digests and any other fields to record).
   */
  private async replaceData(
    upload: PendingUpload,
    write: (file: StagingFile, keeper: LeaseKeeper, replaced: AbortSignal) => Promise<Record<string, string | number>>,
  ): Promise<void> {
    const key = this.keys.objectUpload(upload.name);
    const lease = this.putLease(upload.name);
    const holder = randomBytes(9).toString('base64url');
    const stagingId = `ob_${randomBytes(15).toString('base64url')}`;
    // owned before it exists, so that the staging sweep leaves it alone
    await this.redis.set(this.keys.objectStaging(stagingId), upload.name, 'PX', this.options.uploadLifetimeMs);
    const takenAt = performance.now();
    const begun = await this.run.beginPut2([key, lease], upload.uploadId, holder, this.options.leaseTtlMs);
    const outcome = codeOf('beginPut2', BeginPut, begun);
    if (outcome !== 'done') {
      await this.dropStaging(stagingId);
      if (outcome === 'finishing') throw beingFinished(upload.name);
      throw new NotFoundError(`no upload ${upload.uploadId} of ${JSON.stringify(upload.name)} in progress`);
    }
    if (begun[1]) await this.dropStaging(begun[1]);
    const lost = new AbortController();
    const keeper = this.keepLease(
      lease,
      holder,
      takenAt,
      'a newer PUT of this object replaced this one',
      'this PUT may have lost its lease; PUT again',
      (err) => lost.abort(err),
    );
    let recorded = false;
    try {
      const file = await this.storage.openStaging(stagingId, 0);
      let fields: Record<string, string | number>;
      try {
        fields = await write(file, keeper, lost.signal);
        await file.sync(true);
      } finally {
        await file.close();
      }
      const result = await this.run.recordPut2([key, lease], upload.uploadId, holder, ...Object.entries({ ...fields, stagingId }).flat());
      const outcome = codeOf('recordPut2', RecordPut, result);
      if (outcome === 'gone') throw new NotFoundError('the upload ended while its data arrived');
      if (outcome === 'replaced') throw new ConcurrentWriterError('a newer PUT of this object replaced this one');
      recorded = true;
    } finally {
      keeper.stop();
      if (!recorded) {
        await this.releaseLease(lease, holder);
        await this.dropStaging(stagingId).catch(() => undefined);
      }
    }
  }

  private async dropStaging(stagingId: string): Promise<void> {
    await this.storage.deleteStaging(stagingId);
    await this.redis.del(this.keys.objectStaging(stagingId));
  }

  /** Records a new upload, or returns the one in progress; AlreadyExistsError if the name is finished. */
  private async createPending(u: PendingUpload): Promise<PendingUpload | undefined> {
    const fields = Object.entries(encode(u)).flat();
    const now = new Date().toISOString();
    const answer = await this.run.createIfAbsent2(
      [this.keys.objectUpload(u.name), this.keys.object(u.name)],
      this.options.uploadLifetimeMs,
      now,
      ...fields,
    );
    const outcome = codeOf('createIfAbsent2', Create, answer);
    if (outcome === 'finished') throw new AlreadyExistsError(`object ${JSON.stringify(u.name)} is already finished`);
    if (outcome === 'created') return undefined;
    const existing = answer[1] ?? [];
    const h: Record<string, string> = {};
    for (let i = 0; i + 1 < existing.length; i += 2) h[existing[i]] = existing[i + 1];
    return decode(h);
  }

  private async update(u: PendingUpload, fields: Record<string, string | number>): Promise<boolean> {
    const r = await this.run.updateIfUpload2(this.uploadKeys(u.name), u.uploadId, ...Object.entries(fields).flat());
    const outcome = codeOf('updateIfUpload2', UpdateIfUpload, r);
    if (outcome === 'finishing') throw beingFinished(u.name);
    return outcome === 'done';
  }

  private putLease(name: string): string {
    return `${this.keys.objectUpload(name)}:put`;
  }

  /** An upload's hash and its lease, as the scripts that change the upload take them. */
  private uploadKeys(name: string): [upload: string, lease: string] {
    return [this.keys.objectUpload(name), this.putLease(name)];
  }

  /** Releases `lease` if `holder` still holds it (best effort: it expires anyway). */
  private async releaseLease(lease: string, holder: string): Promise<void> {
    await this.run.lease1([lease], holder, 0).catch(() => undefined);
  }

  private async pending(name: string): Promise<PendingUpload | undefined> {
    return decode(await this.redis.hgetall(this.keys.objectUpload(name)));
  }
}

/** The digest fields a PUT records (sha512 empty when not computed: no older PUT's value stays). */
function digestFields(size: number, digests: Digests): Record<string, string | number> {
  return { size, sha256: digests.sha256, sha512: digests.sha512 ?? '' };
}

function hashesOf(o: CatalogObject): Hashes {
  return { sha256: o.sha256, ...(o.sha512 ? { sha512: o.sha512 } : {}) };
}

function encode(u: PendingUpload): Record<string, string | number> {
  return {
    name: u.name,
    projectId: u.projectId,
    uploadId: u.uploadId,
    expires: u.expires,
    owner: u.owner,
    createdAt: u.createdAt,
    hashes: JSON.stringify(u.hashes),
    contentType: u.contentType,
    contentLength: u.contentLength,
  };
}

function decode(h: Record<string, string>): PendingUpload | undefined {
  if (!h['uploadId']) return undefined;
  return {
    name: h['name'],
    projectId: h['projectId'],
    uploadId: h['uploadId'],
    expires: h['expires'],
    owner: h['owner'],
    createdAt: Number(h['createdAt']),
    hashes: JSON.parse(h['hashes'] ?? '{}') as Hashes,
    contentType: h['contentType'],
    contentLength: Number(h['contentLength'] ?? -1),
    directStagingId: h['directStagingId'] || undefined,
    stored: h['sha256']
      ? { stagingId: h['stagingId'], size: Number(h['size']), sha256: h['sha256'], ...(h['sha512'] ? { sha512: h['sha512'] } : {}) }
      : undefined,
  };
}

function beingFinished(name: string): AlreadyExistsError {
  return new AlreadyExistsError(`the upload of ${JSON.stringify(name)} is being finished`);
}
