import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { Authenticator, Principal } from '@ferry/auth';
import type { CatalogObject } from '@ferry/catalog';
import {
  ConcurrentWriterError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from '@ferry/errors';
import { type Lease, PublishingError, type SessionStore, type UploadSession } from '@ferry/sessions';
import { type Digests, LeaseKeeper, type UploadEngine, type UploadWriter, interruptible } from '@ferry/uploads';
import {
  ChecksumMismatchError,
  type ChunkChecksum,
  ChunkHasher,
  OffsetMismatchError,
  PartialUploadGoneError,
  TUS_CHECKSUM_ALGORITHMS,
  TUS_CONTENT_TYPE,
  TUS_EXTENSIONS,
  TUS_VERSION,
  type UploadConcat,
  UnsupportedMediaTypeError,
  UploadTooLargeError,
  httpDate,
  parseChecksum,
  parseConcat,
  parseMetadata,
  parseSize,
} from './tus-protocol';

export const TUS_PROTOCOL = 'tus';

export interface TusOptions {
  /** Tus-Max-Size. */
  maxSize: number;
  /** Lifetime of an unfinished upload from its creation (Upload-Expires). */
  uploadLifetimeMs: number;
  /** How long a request waits for a stale one to let go of the upload before 409. */
  lockWaitMs?: number;
  /** How often a PATCH looks whether a newer request asked it to let go. */
  releasePollMs?: number;
}

/** What the edge gives of a request: its headers and, for bodies, the stream (destroyed to stop it). */
export interface TusRequest {
  header(name: string): string | undefined;
  body?: Readable;
}

/** What the edge answers: a status and tus headers (no body on success). */
export interface TusReply {
  status: number;
  headers: Record<string, string>;
}

/** The catalog name of a finished tus upload. */
export function tusObjectName(id: string): string {
  return `tus/${id}`;
}

/** The scope that creates, continues, inspects and terminates the tus upload `id` (object `tus/{id}`). */
export function tusWriteScope(id: string): string {
  return `ferry:write:${tusObjectName(id)}`;
}

const ID = /^[A-Za-z0-9_-]{22}$/;

/** A partial upload a final upload concatenates (its `parts` attribute, JSON), in order. */
interface ConcatPart {
  id: string;
  length: number;
}

/**
 * tus 1.0.0 (core, creation, creation-with-upload, creation-defer-length, expiration, checksum,
 * termination, concatenation) on the upload engine, transport-free. All state is the session in
 * Redis (`tus_<id>`): any replica continues any upload. A PATCH holds the writer lease with policy
 * `request`: a newer request (PATCH, HEAD, DELETE) asks it to let go and waits for it (tusd's lock
 * release).
 *
 * Concatenation: a partial upload (attribute `concat` = `partial`) is written like any other, but
 * once whole it is not published: its bytes stay in staging, its session open, until its lifetime
 * ends. A final upload (`concat` = `final;<urls as given>`, `parts` = the partials' ids and
 * lengths) is created by copying the partials' staged bytes, in order, into its own writer, which
 * hashes, verifies and publishes it as `tus/{id}` like any upload. The copy holds each partial's
 * writer lease while it reads it (the expiry never touches a leased upload, a DELETE waits), and
 * commits as it goes: if the process dies, a HEAD of the final (or another request) continues from
 * its committed offset; a partial gone by then drops the final (410).
 */
export class TusService {
  private readonly lockWaitMs: number;
  private readonly releasePollMs: number;

  constructor(
    private readonly engine: UploadEngine,
    private readonly sessions: SessionStore,
    private readonly auth: Authenticator,
    private readonly options: TusOptions,
  ) {
    this.lockWaitMs = options.lockWaitMs ?? 10_000;
    this.releasePollMs = options.releasePollMs ?? 100;
  }

  /** OPTIONS: what this server supports. */
  capabilities(): Record<string, string> {
    return {
      'Tus-Version': TUS_VERSION,
      'Tus-Extension': TUS_EXTENSIONS.join(','),
      'Tus-Max-Size': String(this.options.maxSize),
      'Tus-Checksum-Algorithm': TUS_CHECKSUM_ALGORITHMS.join(','),
    };
  }

  /** POST (creation, creation-defer-length, creation-with-upload): 201 with Location `{base}/{id}`. */
  async create(principal: Principal, req: TusRequest, base: string): Promise<TusReply> {
    const concat = parseConcat(req.header('upload-concat'));
    if (concat?.kind === 'final') return this.createFinal(principal, req, base, concat);
    const length = parseSize('Upload-Length', req.header('upload-length'));
    const defer = req.header('upload-defer-length');
    if (defer !== undefined && defer !== '1') throw new InvalidArgumentError('Upload-Defer-Length must be 1');
    if ((length === undefined) === (defer === undefined)) {
      throw new InvalidArgumentError('send exactly one of Upload-Length and Upload-Defer-Length: 1');
    }
    if (length !== undefined) this.checkMaxSize(length);
    const rawMetadata = req.header('upload-metadata');
    parseMetadata(rawMetadata); // 400 before anything exists
    const withUpload = contentTypeOf(req) === TUS_CONTENT_TYPE;
    const id = randomBytes(16).toString('base64url');
    this.auth.require(principal, tusWriteScope(id));
    const session = await this.engine.getOrCreateSession({
      id: sessionId(id),
      name: tusObjectName(id),
      protocol: TUS_PROTOCOL,
      owner: principal.clientId,
      attributes: {
        ...(length !== undefined ? { length: String(length) } : {}),
        ...(rawMetadata ? { metadata: rawMetadata } : {}),
        ...(concat ? { concat: 'partial' } : {}),
      },
      lifetimeMs: this.options.uploadLifetimeMs,
    });
    const headers: Record<string, string> = { Location: `${base}/${id}`, ...expiresHeader(session) };
    if (withUpload || length === 0) {
      const done = await this.write(session, 0, withUpload ? req : { header: req.header });
      return { status: 201, headers: { ...headers, 'Upload-Offset': String(done) } };
    }
    return { status: 201, headers };
  }

  /** HEAD: the offset (durable bytes), length, metadata, expiry. */
  async head(principal: Principal, id: string): Promise<TusReply> {
    let session = await this.session(principal, id);
    if (isFinal(session) && session.state !== 'finished') {
      // a final upload whose copy stopped (its process died): continue it from its committed offset
      try {
        await this.concatenate(session);
      } catch (err) {
        // another request is copying it (or just finished it): answer how far it got
        if (!(err instanceof ConcurrentWriterError) && !(err instanceof FailedPreconditionError)) throw err;
      }
      session = await this.session(principal, id);
    } else if (session.state === 'open' && !this.partialDone(session) && (await this.sessions.leaseHeld(session.id))) {
      // a stale PATCH may still hold it (its client gone): ask it to let go, so the offset answered is
      // final; a PATCH that finished the upload and publishes it does not let go, and needs not to
      try {
        await this.sessions.releaseLease(await this.leased(() => this.sessions.acquireLease(session.id, 'request'))).catch(() => undefined);
        session = await this.session(principal, id);
      } catch (err) {
        session = await this.session(principal, id);
        if (session.state === 'open') throw err;
      }
    }
    const length = session.attributes['length'];
    return {
      status: 200,
      headers: {
        // (a final upload still being copied by another request has no offset yet: the spec's SHOULD NOT)
        ...(isFinal(session) && session.state !== 'finished' ? {} : { 'Upload-Offset': String(session.committed) }),
        ...(length !== undefined ? { 'Upload-Length': length } : { 'Upload-Defer-Length': '1' }),
        ...(session.attributes['metadata'] ? { 'Upload-Metadata': session.attributes['metadata'] } : {}),
        ...(session.attributes['concat'] ? { 'Upload-Concat': session.attributes['concat'] } : {}),
        'Cache-Control': 'no-store',
        ...(session.state === 'finished' ? {} : expiresHeader(session)),
      },
    };
  }

  /** PATCH: appends the body at Upload-Offset; answers the new offset once it is durable. */
  async patch(principal: Principal, id: string, req: TusRequest): Promise<TusReply> {
    if (contentTypeOf(req) !== TUS_CONTENT_TYPE) throw new UnsupportedMediaTypeError(`Content-Type must be ${TUS_CONTENT_TYPE}`);
    const offset = parseSize('Upload-Offset', req.header('upload-offset'));
    if (offset === undefined) throw new InvalidArgumentError('Upload-Offset is required');
    let session = await this.session(principal, id);
    if (isFinal(session)) throw new PermissionDeniedError(`upload ${id} is a final upload (Upload-Concat: final): it cannot be patched`);
    const declared = parseSize('Upload-Length', req.header('upload-length'));
    if (declared !== undefined && session.attributes['length'] === undefined) {
      this.checkMaxSize(declared);
      if (declared < session.committed) throw new InvalidArgumentError('Upload-Length is below the offset already written');
      await this.sessions.amend(session.id, { fill: { length: String(declared) } });
      session = await this.session(principal, id);
    } else if (declared !== undefined && String(declared) !== session.attributes['length']) {
      throw new InvalidArgumentError(`Upload-Length was ${session.attributes['length']} already`);
    }
    const done = await this.write(session, offset, req);
    const published = done === this.lengthOf(session) && !isPartial(session);
    return { status: 204, headers: { 'Upload-Offset': String(done), ...(published ? {} : expiresHeader(session)) } };
  }

  /**
   * DELETE (termination): the upload and its bytes are gone; later requests answer 404. A finished
   * (published) upload cannot be terminated: 409. A partial upload can, whole or not, unless a final
   * upload is copying it right now (it holds its lease: the DELETE waits for it, then 409); a final
   * upload that names it and has not copied it yet then fails (410).
   */
  async terminate(principal: Principal, id: string): Promise<TusReply> {
    const session = await this.session(principal, id);
    if (session.state === 'finished') throw new FailedPreconditionError(`upload ${id} is finished: it is the object ${tusObjectName(id)}`);
    await this.leased(() => this.engine.discard(session.id, 'request'));
    return { status: 204, headers: {} };
  }

  // --- helpers ---------------------------------------------------------------------------------

  private checkMaxSize(length: number): void {
    if (length > this.options.maxSize)
      throw new UploadTooLargeError(`Upload-Length ${length} is over Tus-Max-Size ${this.options.maxSize}`);
  }

  /** A partial upload whose bytes are all there (immutable from then on). */
  private partialDone(session: UploadSession): boolean {
    return isPartial(session) && session.attributes['length'] !== undefined && session.committed === this.lengthOf(session);
  }

  private lengthOf(session: UploadSession): number | undefined {
    const length = session.attributes['length'];
    return length === undefined ? undefined : Number(length);
  }

  /** The upload `id` of this principal (NotFoundError when there is none or it expired). */
  private async session(principal: Principal, id: string): Promise<UploadSession> {
    if (!ID.test(id)) throw new NotFoundError(`no tus upload ${JSON.stringify(id)}`);
    this.auth.require(principal, tusWriteScope(id));
    const session = await this.engine.getSession(sessionId(id));
    if (!session || session.protocol !== TUS_PROTOCOL)
      throw new NotFoundError(`no tus upload ${id} (finished long ago, expired or terminated)`);
    if (session.owner !== principal.clientId) throw new PermissionDeniedError(`upload ${id} belongs to another client`);
    return session;
  }

  /**
   * Runs `take` (which takes the writer lease with policy `request`) until it gets the lease: the
   * holder was asked to let go and does within a poll; ConcurrentWriterError (409) after lockWaitMs.
   */
  private async leased<T>(take: () => Promise<T>): Promise<T> {
    const until = Date.now() + this.lockWaitMs;
    for (;;) {
      try {
        return await take();
      } catch (err) {
        if (!(err instanceof ConcurrentWriterError) || err instanceof PublishingError || Date.now() >= until) throw err;
      }
      await sleep(this.releasePollMs / 2);
    }
  }

  /** Writes the body at `offset` and returns the offset after it (durable); publishes at the length. */
  private async write(session: UploadSession, offset: number, req: TusRequest): Promise<number> {
    const checksum = parseChecksum(req.header('upload-checksum'));
    const length = this.lengthOf(session);
    const contentLength = parseSize('Content-Length', req.header('content-length'));
    const limit = length ?? this.options.maxSize;
    if (contentLength !== undefined && offset + contentLength > limit) {
      throw new UploadTooLargeError(
        `${offset} + ${contentLength} bytes is past ${length !== undefined ? 'Upload-Length' : 'Tus-Max-Size'} ${limit}`,
      );
    }
    if (session.state === 'finished') {
      if (offset !== session.committed)
        throw new OffsetMismatchError(`Upload-Offset ${offset}: the upload is finished at ${session.committed}`);
      return session.committed;
    }
    if (this.partialDone(session)) {
      if (offset !== session.committed)
        throw new OffsetMismatchError(`Upload-Offset ${offset}: the partial upload is complete at ${session.committed}`);
      return session.committed;
    }
    const writer = await this.leased(() =>
      this.engine.openWriter(session.id, [], { policy: 'request', holdCommits: checksum !== undefined }),
    );
    if (writer.publishing) return this.finish(writer, session);
    if (offset !== writer.committedSize) {
      await writer.close();
      throw new OffsetMismatchError(`Upload-Offset ${offset} is not the upload's offset ${writer.committedSize}`);
    }
    let keep = checksum === undefined;
    try {
      await this.receive(writer, req.body, limit, checksum);
      keep = true;
    } catch (err) {
      await writer.close(keep);
      throw err;
    }
    if (length !== undefined && writer.receivedSize === length && !isPartial(session)) return this.finish(writer, session);
    // (a partial upload is not published when whole: its bytes stay in staging for a final upload)
    const committed = await writer.flush(length !== undefined && writer.receivedSize === length);
    await writer.close();
    return committed;
  }

  /**
   * POST `Upload-Concat: final;<urls>`: checks every partial named (this client's, partial, whole),
   * creates the final upload of their total length and copies their bytes into it (see
   * `concatenate`), then answers 201 with the object published.
   */
  private async createFinal(
    principal: Principal,
    req: TusRequest,
    base: string,
    concat: Extract<UploadConcat, { kind: 'final' }>,
  ): Promise<TusReply> {
    if (req.header('upload-length') !== undefined || req.header('upload-defer-length') !== undefined) {
      throw new InvalidArgumentError('a final upload (Upload-Concat: final) is as long as its partial uploads: send no Upload-Length');
    }
    const bodyLength = parseSize('Content-Length', req.header('content-length'));
    if ((bodyLength ?? 0) > 0 || (bodyLength === undefined && req.header('transfer-encoding') !== undefined)) {
      throw new InvalidArgumentError('a final upload (Upload-Concat: final) takes no body: its bytes are those of its partial uploads');
    }
    const rawMetadata = req.header('upload-metadata');
    parseMetadata(rawMetadata);
    const parts: ConcatPart[] = [];
    for (const [i, partId] of concat.ids.entries()) parts.push(await this.partialOf(principal, partId, concat.urls[i]));
    const length = parts.reduce((sum, p) => sum + p.length, 0);
    this.checkMaxSize(length);
    const id = randomBytes(16).toString('base64url');
    this.auth.require(principal, tusWriteScope(id));
    const session = await this.engine.getOrCreateSession({
      id: sessionId(id),
      name: tusObjectName(id),
      protocol: TUS_PROTOCOL,
      owner: principal.clientId,
      attributes: {
        length: String(length),
        concat: `final;${concat.urls.join(' ')}`,
        parts: JSON.stringify(parts),
        ...(rawMetadata ? { metadata: rawMetadata } : {}),
      },
      lifetimeMs: this.options.uploadLifetimeMs,
    });
    await this.concatenate(session);
    return { status: 201, headers: { Location: `${base}/${id}` } };
  }

  /** The partial upload `id` that `url` (in Upload-Concat) names, checked: this client's, partial and whole. */
  private async partialOf(principal: Principal, id: string, url: string): Promise<ConcatPart> {
    const named = `Upload-Concat: ${JSON.stringify(url)}`;
    this.auth.require(principal, tusWriteScope(id));
    const session = await this.engine.getSession(sessionId(id));
    if (!session || session.protocol !== TUS_PROTOCOL)
      throw new InvalidArgumentError(`${named} names no upload (unknown, expired or terminated)`);
    if (session.owner !== principal.clientId) throw new PermissionDeniedError(`${named} names an upload of another client`);
    if (!isPartial(session)) throw new InvalidArgumentError(`${named} is not a partial upload (created with Upload-Concat: partial)`);
    if (!this.partialDone(session)) {
      const length = session.attributes['length'] ?? 'a deferred number of';
      throw new InvalidArgumentError(`${named} is not finished: ${session.committed} of ${length} bytes uploaded`);
    }
    return { id, length: session.committed };
  }

  /**
   * Completes a final upload: copies its partial uploads' bytes from its committed offset on, then
   * verifies and publishes it. Idempotent and resumable: the copy commits as it goes (as any
   * writer), so a later call (a HEAD, after the process copying it died) continues where the last
   * committed, and one that finds the final publishing finishes that. ConcurrentWriterError when
   * another request holds it; PartialUploadGoneError (and the final is dropped) when a partial it
   * still needs is gone.
   */
  private async concatenate(session: UploadSession): Promise<void> {
    const writer = await this.engine.openWriter(session.id, [], { policy: 'refuse' });
    if (writer.publishing) {
      await this.finish(writer, session);
      return;
    }
    try {
      let start = 0;
      for (const part of partsOf(session)) {
        const end = start + part.length;
        if (writer.receivedSize < end) await this.copyPartial(writer, part, writer.receivedSize - start);
        start = end;
      }
    } catch (err) {
      if (err instanceof PartialUploadGoneError) await writer.abandon();
      else await writer.close();
      throw err;
    }
    await this.finish(writer, session);
  }

  /**
   * Streams the partial upload `part`, from `from` on, into the final upload's writer, holding the
   * partial's writer lease throughout (renewed; the read stops if it may have lapsed): while it is
   * held the expiry leaves the partial alone and a DELETE of it waits. Chunks are the storage's
   * reads (1 MiB on disk), never the whole partial.
   */
  private async copyPartial(writer: UploadWriter, part: ConcatPart, from: number): Promise<void> {
    const id = sessionId(part.id);
    const takenAt = performance.now();
    let lease: Lease;
    try {
      lease = await this.leased(() => this.sessions.acquireLease(id, 'refuse'));
    } catch (err) {
      if (err instanceof ConcurrentWriterError) {
        throw new ConcurrentWriterError(`partial upload ${part.id} is in use (a final upload copying it, or its DELETE): retry`);
      }
      if (!(err instanceof NotFoundError)) throw err;
      throw new PartialUploadGoneError(
        `partial upload ${part.id} is gone (expired or terminated) before the final upload ${writer.session.name} copied it: ` +
          'the final upload is dropped; upload the part again',
      );
    }
    const keeper = new LeaseKeeper(
      () => this.sessions.renewLease(lease),
      this.sessions.leaseTtlMs,
      takenAt,
      `lost the lease of partial upload ${part.id} while copying it; retry`,
    );
    try {
      if (lease.committed !== part.length) {
        throw new InternalError(`partial upload ${part.id} holds ${lease.committed} bytes, not the ${part.length} it had when named`);
      }
      for await (const chunk of this.engine.readStaged(id, from, part.length)) {
        keeper.check();
        await writer.write(chunk as Buffer);
      }
    } finally {
      keeper.stop();
      await this.sessions.releaseLease(lease).catch(() => undefined);
    }
  }

  /** Streams the body into the writer up to `limit`, verifying `checksum`; stops when asked to let go. */
  private async receive(
    writer: UploadWriter,
    body: Readable | undefined,
    limit: number,
    checksum: ChunkChecksum | undefined,
  ): Promise<void> {
    if (!body) return;
    const hasher = checksum ? new ChunkHasher(checksum.algorithm) : undefined;
    // asked to let go: stop reading (the edge answers 409 and closes the connection), keep what was written
    const release = new AbortController();
    let polling = false;
    const watch = setInterval(() => {
      if (polling) return;
      polling = true;
      writer
        .releaseAsked()
        .then((asked) => {
          if (asked) release.abort(new ConcurrentWriterError('a newer request on this upload took it over: this PATCH stopped'));
        })
        .catch(() => undefined)
        .finally(() => (polling = false));
    }, this.releasePollMs);
    try {
      for await (const chunk of interruptible<Buffer>(body[Symbol.asyncIterator](), release.signal)) {
        const room = limit - writer.receivedSize;
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        hasher?.update(part); // before write: the writer takes ownership of the bytes
        if (part.length > 0) await writer.write(part);
        if (chunk.length > room) throw new UploadTooLargeError(`the body goes past ${limit} bytes`);
      }
    } finally {
      clearInterval(watch);
    }
    if (checksum && hasher && !hasher.digest().equals(checksum.expected)) {
      throw new ChecksumMismatchError(`Upload-Checksum ${checksum.algorithm} does not match the chunk: discarded`);
    }
  }

  private async finish(writer: UploadWriter, session: UploadSession): Promise<number> {
    const id = session.name.slice('tus/'.length);
    const metadata = parseMetadata(session.attributes['metadata']);
    const contentType = metadata['filetype'] || metadata['type'] || metadata['contentType'] || 'application/octet-stream';
    const createdAt = new Date().toISOString();
    const length = this.lengthOf(session);
    const published = await writer.finish(
      { ...(length !== undefined ? { size: length } : {}), declaredBy: 'Upload-Length' },
      (size: number, digests: Digests): CatalogObject => ({
        name: tusObjectName(id),
        size,
        ...digests,
        contentType,
        owner: session.owner,
        project: TUS_PROTOCOL,
        createdAt,
        expires: null,
        protocol: TUS_PROTOCOL,
        blob: digests.sha256,
        ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
      }),
      (object) => ({ result: JSON.stringify({ name: object.name, sha256: object.sha256 }), retainMs: this.options.uploadLifetimeMs }),
    );
    return published.size;
  }
}

function sessionId(id: string): string {
  return `tus_${id}`;
}

function isPartial(session: UploadSession): boolean {
  return session.attributes['concat'] === 'partial';
}

function isFinal(session: UploadSession): boolean {
  return session.attributes['concat']?.startsWith('final;') ?? false;
}

/** A final upload's partial uploads, as recorded at its creation. */
function partsOf(session: UploadSession): ConcatPart[] {
  return JSON.parse(session.attributes['parts'] ?? '[]') as ConcatPart[];
}

function contentTypeOf(req: TusRequest): string | undefined {
  return req.header('content-type')?.split(';')[0].trim().toLowerCase();
}

function expiresHeader(session: UploadSession): Record<string, string> {
  return session.deadline !== undefined ? { 'Upload-Expires': httpDate(session.deadline) } : {};
}
