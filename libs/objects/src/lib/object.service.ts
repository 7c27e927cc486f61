import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Authenticator, Principal, SignedRequest, UrlSigner } from '@ferry/auth';
import { type CatalogObject, assertClientWritable } from '@ferry/catalog';
import { AlreadyExistsError, ConcurrentWriterError, InvalidArgumentError, NotFoundError, UnavailableError } from '@ferry/errors';
import { nameTag } from '@ferry/redis';
import {
  type AttributeChange,
  ConflictingAttributeError,
  type Lease,
  PublishingError,
  SessionStore,
  type UploadSession,
} from '@ferry/sessions';
import type { DirectAccess, StagingFile, Storage } from '@ferry/storage';
import { BatchedWriter, InlineHasher, LeaseKeeper, StreamDigests, UploadEngine, interruptible } from '@ferry/uploads';
import type { Digests, HashPool } from '@ferry/uploads';
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

/**
 * The session of the upload of an object name: the object API names an upload by its object (one
 * upload of a name at a time), so its id derives from the name.
 */
export function objectSessionId(name: string): string {
  return `ob_${nameTag(name)}`;
}

/** The staging of one writer of an object upload: every PUT, and a finisher's snapshot of direct PUTs, writes its own. */
function writerStaging(sessionId: string, fence: number): string {
  return `${sessionId}_${fence}`;
}

/** Staging ids of object uploads: a writer's (`_<fence>`), or the one direct putUrls name (`_d<random>`). */
const OBJECT_STAGING = /^(ob_[0-9a-f]{32})_(\d+|d[A-Za-z0-9_-]+)$/;

/**
 * Tells the staging sweep which staging objects belong to object uploads still alive: the bytes of
 * the writer in progress (the session's latest fence), those recorded (`writtenBy`), and the target
 * of direct putUrls. Another writer's (replaced, or dead with its process) are left to the sweep.
 */
export class ObjectStagingOwner {
  constructor(private readonly sessions: SessionStore) {}

  async exists(stagingId: string): Promise<boolean> {
    const m = OBJECT_STAGING.exec(stagingId);
    if (!m) return false;
    const session = await this.sessions.get(m[1]);
    if (!session) return false;
    if (m[2].startsWith('d')) return session.attributes['directStagingId'] === stagingId;
    const fence = Number(m[2]);
    return fence === session.fence || fence === session.writtenBy;
  }
}

export const ObjectScopes = {
  upload: (projectId: string, name: string) => `object:upload:${projectId}:${name}`,
  download: (name: string) => `object:download:${name}`,
};

/**
 * An unfinished upload: the session of its name (`objectSessionId`), whose attributes hold the
 * object API's facts, and whose committed size and digests, those of the bytes a PUT stored.
 */
interface PendingUpload {
  id: string;
  name: string;
  projectId: string;
  uploadId: string;
  expires: string;
  owner: string;
  hashes: Hashes;
  contentType: string;
  /** Declared length of the putUrl body (-1: none declared). */
  contentLength: number;
  /** The staging object putUrls name when they go straight to the bucket (S3). */
  directStagingId?: string;
  /**
   * What is stored, once a PUT's data arrived (in its staging object): its sha256, and its sha512
   * when it was declared before the bytes arrived (else finishUpload computes it if declared).
   */
  stored?: Stored;
}

interface Stored {
  stagingId: string;
  size: number;
  sha256: string;
  sha512?: string;
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
  constructor(
    private readonly sessions: SessionStore,
    private readonly engine: UploadEngine,
    /** Staging only (the bytes of uploads in progress); published content goes through the engine. */
    private readonly storage: Storage,
    private readonly auth: Authenticator,
    private readonly signer: UrlSigner,
    private readonly hashPool: HashPool,
    private readonly options: ObjectServiceOptions,
  ) {}

  async createUpload(principal: Principal, name: string, body: unknown, baseUrl: string): Promise<CreateUploadResponse> {
    assertObjectName(name);
    const req = parseCreateUpload(body);
    this.auth.require(principal, ObjectScopes.upload(req.projectId, name));
    assertClientWritable(name);
    const expires = new Date(req.expires).toISOString();
    const put = req.proposedUploadMethods.putUrl;
    const inline = req.proposedUploadMethods.dataInline;
    const upload = await this.beginUpload(principal, name, {
      projectId: req.projectId,
      uploadId: req.uploadId,
      expires,
      contentType: put?.contentType ?? inline?.contentType ?? 'application/binary',
      contentLength: String(put?.contentLength ?? -1),
      ...hashAttributes(req.hashes ?? {}),
    });

    let uploadMethod: UploadMethod = {};
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
      await this.amend(upload, { set: { contentType: put.contentType, contentLength: String(put.contentLength) } });
      uploadMethod = { putUrl: { url, expires: new Date(expiresAt * 1000).toISOString(), headers } };
    }
    return { projectId: upload.projectId, uploadId: upload.uploadId, expires, uploadMethod };
  }

  /**
   * The upload of `name` these attributes describe: created, or the one in progress if it is the
   * same (uploadId, projectId, expires), its declared hashes merged in one step (two createUploads
   * declaring different ones cannot both succeed). AlreadyExistsError if the name is finished, or
   * another upload of it is in progress.
   */
  private async beginUpload(principal: Principal, name: string, attributes: Record<string, string>): Promise<PendingUpload> {
    const id = objectSessionId(name);
    if (await this.engine.object(name)) throw finishedAlready(name);
    const init = { id, name, protocol: 'object', owner: principal.clientId, attributes, lifetimeMs: this.options.uploadLifetimeMs };
    let session: UploadSession;
    try {
      session = await this.sessions.getOrCreate(init);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      // the name's previous upload passed its lifetime and the worker has not removed it yet: it
      // ends now (its writers' staging is left to the sweep), so that the name can be uploaded again
      if ((await this.sessions.beginExpiry(id, 0)) === 'expiring') await this.sessions.endExpiry(id);
      session = await this.sessions.getOrCreate(init);
    }
    const upload = pendingOf(session);
    if (
      upload.uploadId !== attributes['uploadId'] ||
      upload.expires !== attributes['expires'] ||
      upload.projectId !== attributes['projectId']
    ) {
      throw new AlreadyExistsError(`another upload of ${JSON.stringify(name)} is in progress (different uploadId, projectId or expires)`);
    }
    const declared = Object.fromEntries(Object.entries(attributes).filter(([k]) => k.startsWith(HASH)));
    try {
      // (also what says whether it is being finished: then it cannot change)
      await this.sessions.amend(id, { match: { uploadId: upload.uploadId }, fill: declared });
    } catch (err) {
      if (err instanceof NotFoundError)
        throw new AlreadyExistsError(`the upload of ${JSON.stringify(name)} ended meanwhile; create it again`);
      if (err instanceof ConflictingAttributeError)
        throw new AlreadyExistsError(`${err.attribute.slice(HASH.length)} differs from the one already declared`);
      throw this.asObjectError(err, name);
    }
    // a finish that published the name and ended its upload just before this one was created
    if (await this.engine.object(name)) {
      if (session.committed === 0 && !session.writtenBy) await this.engine.discard(id).catch(() => undefined);
      throw finishedAlready(name);
    }
    const merged = mergeHashes(upload.hashes, hashesOfAttributes(declared)).merged;
    return { ...upload, hashes: merged };
  }

  /** Changes an upload's attributes while it is open (see SessionStore.amend). */
  private async amend(upload: PendingUpload, change: Omit<AttributeChange, 'match'>): Promise<void> {
    try {
      await this.sessions.amend(upload.id, { ...change, match: { uploadId: upload.uploadId } });
    } catch (err) {
      throw this.asObjectError(err, upload.name);
    }
  }

  /** A session error in the object API's terms. */
  private asObjectError(err: unknown, name: string): unknown {
    if (err instanceof PublishingError) return beingFinished(name);
    if (err instanceof NotFoundError) return new NotFoundError(`no upload of ${JSON.stringify(name)} in progress`);
    return err;
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
      stagingId = `${upload.id}_d${randomBytes(15).toString('base64url')}`;
      try {
        await this.amend(upload, { fill: { directStagingId: stagingId } });
      } catch (err) {
        if (!(err instanceof ConflictingAttributeError)) throw err;
        // another createUpload chose it first
        stagingId = (await this.pending(upload.name))?.directStagingId;
        if (!stagingId) throw new NotFoundError(`no upload ${upload.uploadId} of ${JSON.stringify(upload.name)} in progress`);
      }
    }
    const expiresInSeconds = Math.floor(this.options.urlTtlMs / 1000);
    const { url } = await direct.stagingPartPutUrl(stagingId, 0, {
      contentLength: put.contentLength,
      contentType: put.contentType,
      expiresInSeconds,
    });
    await this.amend(upload, { set: { contentType: put.contentType, contentLength: String(put.contentLength) } });
    return {
      url,
      expires: new Date(Date.now() + expiresInSeconds * 1000).toISOString(),
      headers: { 'Content-Type': put.contentType, 'Content-Length': String(put.contentLength) },
    };
  }

  /**
   * What a client PUT straight to the bucket, hashed now (Ferry did not see the bytes arrive). The
   * bytes are first copied, inside the store, to a staging object no URL names (the finisher's, by
   * its fence): a PUT racing the finish can then change neither what is verified nor what is
   * published.
   */
  private async directStored(upload: PendingUpload, lease: Lease, declared: Hashes, keeper: LeaseKeeper): Promise<Stored | undefined> {
    const direct = this.storage.direct;
    if (!upload.directStagingId || !direct) return undefined;
    const stagingId = writerStaging(upload.id, lease.fence);
    const size = await direct.snapshotStaging(upload.directStagingId, stagingId);
    if (size === undefined) return undefined;
    try {
      if (upload.contentLength >= 0 && size !== upload.contentLength) {
        throw new AlreadyExistsError(
          `the uploaded data has ${size} bytes, not the declared contentLength ${upload.contentLength}; PUT it again`,
        );
      }
      const algos: ('sha256' | 'sha512')[] = declared.sha512 ? ['sha256', 'sha512'] : ['sha256'];
      const { sha256, sha512 } = await this.hashPool.digestOf(algos, this.storage.readStaging(stagingId, 0, size), () => keeper.check());
      return { stagingId, size, sha256, ...(sha512 ? { sha512 } : {}) };
    } catch (err) {
      await this.storage.deleteStaging(stagingId).catch(() => undefined);
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
        return { size, digests: await hasher.digest() };
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
    for (let attempt = 0, ended = 0; ; attempt++) {
      const upload = await this.pending(name);
      if (!upload) return this.finishedAlready(name, req.projectId, req.hashes);
      if (upload.projectId !== req.projectId)
        throw new InputError(`object ${JSON.stringify(name)} does not have projectId ${req.projectId}`);
      if (upload.uploadId !== req.uploadId) throw new AlreadyExistsError('uploadId does not match the upload in progress');
      const { conflict } = mergeHashes(upload.hashes, req.hashes);
      if (conflict) throw new AlreadyExistsError(`${conflict} differs from the one already declared`);
      const outcome = await this.finishPending(upload, req.hashes);
      if (outcome === 'finished') return {};
      // it ended since it was read (finished by another replica, expired): look again
      if (outcome === 'ended' && ++ended < 5) {
        attempt--;
        continue;
      }
      // another replica is finishing it (a client retry): once it is done, answer as for a finished object
      if (attempt > 0 || !(await this.waitForLease(upload.id, FINISH_WAIT_MS))) {
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
   * Verifies and publishes what is stored for `upload`, holding its lease with the session
   * publishing: no PUT, createUpload or other finish changes the upload meanwhile. 'elsewhere'
   * when another finish holds it, 'ended' when the upload ended since it was read. A refused
   * content (wrong hash) leaves the upload open, as it was.
   */
  private async finishPending(read: PendingUpload, requested: Hashes | undefined): Promise<'finished' | 'elsewhere' | 'ended'> {
    const { name, id } = read;
    const takenAt = performance.now();
    let lease: Lease;
    try {
      lease = await this.sessions.acquireLease(id, 'publish', { uploadId: read.uploadId });
    } catch (err) {
      if (err instanceof NotFoundError) return 'ended';
      if (!(err instanceof ConcurrentWriterError)) throw err;
      if ((await this.sessions.get(id))?.state === 'publishing') return 'elsewhere';
      throw putInProgress();
    }
    const keeper = this.keepLease(lease, takenAt, 'the finish lost its lease', 'this finish may have lost its lease; finish again');
    let published = false;
    let snapshot: string | undefined;
    let upload: PendingUpload | undefined;
    try {
      // read again now that it cannot change: the hashes declared meanwhile count
      const session = await this.sessions.get(id);
      if (!session) throw new NotFoundError(`the upload of ${JSON.stringify(name)} ended while finishing`);
      upload = pendingOf(session);
      const { merged: declared, conflict } = mergeHashes(upload.hashes, requested);
      if (conflict) throw new AlreadyExistsError(`${conflict} differs from the one already declared`);
      let data = upload.stored;
      if (!data) {
        data = await this.directStored(upload, lease, declared, keeper);
        snapshot = data?.stagingId;
      }
      if (!data) throw new AlreadyExistsError('no data was uploaded for this object yet');
      // (bytes PUT through Ferry may be gone from staging because a finish that failed after
      // moving them already published them into the blob)
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
      await this.sessions.finish(lease);
    } catch (err) {
      if (!published) {
        if (snapshot) await this.storage.deleteStaging(snapshot).catch(() => undefined);
        await this.sessions.reopen(lease).catch(() => undefined);
      }
      throw err;
    } finally {
      keeper.stop();
    }
    // what clients PUT to the bucket was copied before it was verified; the original goes now
    if (upload.directStagingId) await this.storage.deleteStaging(upload.directStagingId).catch(() => undefined);
    return 'finished';
  }

  /** Keeps an upload's lease (a PUT's or a finisher's) renewed in the background while its holder works. */
  private keepLease(lease: Lease, takenAt: number, replaced: string, mayHaveLost: string, onLost?: (err: unknown) => void): LeaseKeeper {
    const renew = async () => {
      try {
        await this.sessions.renewLease(lease);
      } catch (err) {
        throw err instanceof ConcurrentWriterError ? new ConcurrentWriterError(replaced) : err;
      }
    };
    return new LeaseKeeper(renew, this.sessions.leaseTtlMs, takenAt, mayHaveLost, onLost);
  }

  /** Waits until the upload's lease is released or has expired; false if it is still held after `ms`. */
  private async waitForLease(id: string, ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    while (await this.sessions.leaseHeld(id)) {
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
    await this.amend(upload, { set: { contentType, contentLength: String(data.length) } });
    await this.replaceData(upload, async (file) => {
      await file.write(data, 0);
      const hasher = new InlineHasher(['sha512']);
      hasher.update(data);
      return { size: data.length, digests: await hasher.digest() };
    });
  }

  /**
   * The sha512 of stored bytes, declared only at finishUpload (as taskcluster-client's upload()
   * does): one pass on a pool thread, under the finish lease. Read from the staging object, or from
   * the blob when a finish that failed after publishing the bytes moved them there.
   */
  private async sha512Of(data: Stored, keeper: LeaseKeeper): Promise<string> {
    const staged = (await this.storage.stagingSize(data.stagingId)) === data.size;
    const chunks = staged ? this.storage.readStaging(data.stagingId, 0, data.size) : this.engine.readBlob(data.sha256, 0, data.size);
    return (await this.hashPool.digestOf(['sha512'], chunks, () => keeper.check())).sha512;
  }

  /**
   * Replaces the bytes stored for an upload: the newest call wins, as a writer that takes the
   * session's lease over (SessionStore, `takeover`), which forgets what was stored at once. Each
   * call writes a staging object of its own (by its fence), so a PUT still running elsewhere, or
   * one whose process died holding the lease, never mixes its bytes with these, and cannot block a
   * client that PUTs again. Only a call still holding the lease when its bytes are durable records
   * them (`write` returns the size and digests).
   */
  private async replaceData(
    upload: PendingUpload,
    write: (file: StagingFile, keeper: LeaseKeeper, replaced: AbortSignal) => Promise<{ size: number; digests: Digests }>,
  ): Promise<void> {
    const takenAt = performance.now();
    let lease: Lease;
    try {
      lease = await this.sessions.acquireLease(upload.id, 'takeover', { uploadId: upload.uploadId });
    } catch (err) {
      if (err instanceof NotFoundError)
        throw new NotFoundError(`no upload ${upload.uploadId} of ${JSON.stringify(upload.name)} in progress`);
      throw this.asObjectError(err, upload.name);
    }
    // the bytes a previous PUT stored are forgotten: they go
    if (lease.replaced !== undefined) await this.storage.deleteStaging(writerStaging(upload.id, lease.replaced)).catch(() => undefined);
    const stagingId = writerStaging(upload.id, lease.fence);
    const lost = new AbortController();
    const replacedBy = 'a newer PUT of this object replaced this one';
    const keeper = this.keepLease(lease, takenAt, replacedBy, 'this PUT may have lost its lease; PUT again', (err) => lost.abort(err));
    let recorded = false;
    try {
      const file = await this.storage.openStaging(stagingId, 0, lease.fence);
      let written: { size: number; digests: Digests };
      try {
        written = await write(file, keeper, lost.signal);
        await file.sync(true);
      } finally {
        await file.close();
      }
      try {
        await this.sessions.record(lease, written.size, written.digests);
      } catch (err) {
        if (err instanceof NotFoundError) throw new NotFoundError('the upload ended while its data arrived');
        throw err instanceof ConcurrentWriterError ? new ConcurrentWriterError(replacedBy) : err;
      }
      recorded = true;
    } finally {
      keeper.stop();
      if (!recorded) {
        await this.sessions.releaseLease(lease).catch(() => undefined);
        await this.storage.deleteStaging(stagingId).catch(() => undefined);
      }
    }
  }

  private async pending(name: string): Promise<PendingUpload | undefined> {
    const session = await this.sessions.get(objectSessionId(name));
    return session && pendingOf(session);
  }
}

/** Attributes holding declared hashes: `hash.<algo>`. */
const HASH = 'hash.';

function hashAttributes(hashes: Hashes): Record<string, string> {
  return Object.fromEntries(Object.entries(hashes).flatMap(([algo, v]) => (v === undefined ? [] : [[`${HASH}${algo}`, v]])));
}

function hashesOfAttributes(attributes: Record<string, string>): Hashes {
  const hashes: Record<string, string> = {};
  for (const [k, v] of Object.entries(attributes)) if (k.startsWith(HASH)) hashes[k.slice(HASH.length)] = v;
  return hashes as Hashes;
}

function hashesOf(o: CatalogObject): Hashes {
  return { sha256: o.sha256, ...(o.sha512 ? { sha512: o.sha512 } : {}) };
}

/** An object upload as its session holds it. */
function pendingOf(s: UploadSession): PendingUpload {
  const a = s.attributes;
  return {
    id: s.id,
    name: s.name,
    projectId: a['projectId'],
    uploadId: a['uploadId'],
    expires: a['expires'],
    owner: s.owner,
    hashes: hashesOfAttributes(a),
    contentType: a['contentType'],
    contentLength: Number(a['contentLength'] ?? -1),
    directStagingId: a['directStagingId'] || undefined,
    stored:
      s.digests && s.writtenBy !== undefined
        ? {
            stagingId: writerStaging(s.id, s.writtenBy),
            size: s.committed,
            sha256: s.digests.sha256,
            ...(s.digests.sha512 ? { sha512: s.digests.sha512 } : {}),
          }
        : undefined,
  };
}

function beingFinished(name: string): AlreadyExistsError {
  return new AlreadyExistsError(`the upload of ${JSON.stringify(name)} is being finished`);
}

function finishedAlready(name: string): AlreadyExistsError {
  return new AlreadyExistsError(`object ${JSON.stringify(name)} is already finished`);
}

function putInProgress(): AlreadyExistsError {
  return new AlreadyExistsError('a PUT of this object is in progress; finish it first');
}
