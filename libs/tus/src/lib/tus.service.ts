import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { Authenticator, Principal } from '@ferry/auth';
import type { CatalogObject } from '@ferry/catalog';
import { ConcurrentWriterError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from '@ferry/errors';
import { PublishingError, type SessionStore, type UploadSession } from '@ferry/sessions';
import { type Digests, type UploadEngine, type UploadWriter, interruptible } from '@ferry/uploads';
import {
  ChecksumMismatchError,
  type ChunkChecksum,
  ChunkHasher,
  OffsetMismatchError,
  TUS_CHECKSUM_ALGORITHMS,
  TUS_CONTENT_TYPE,
  TUS_EXTENSIONS,
  TUS_VERSION,
  UnsupportedMediaTypeError,
  UploadTooLargeError,
  httpDate,
  parseChecksum,
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

/**
 * tus 1.0.0 (core, creation, creation-with-upload, creation-defer-length, expiration, checksum,
 * termination) on the upload engine, transport-free. All state is the session in Redis (`tus_<id>`):
 * any replica continues any upload. A PATCH holds the writer lease with policy `request`: a newer
 * request (PATCH, HEAD, DELETE) asks it to let go and waits for it (tusd's lock release).
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
      attributes: { ...(length !== undefined ? { length: String(length) } : {}), ...(rawMetadata ? { metadata: rawMetadata } : {}) },
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
    if (session.state === 'open' && (await this.sessions.leaseHeld(session.id))) {
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
        'Upload-Offset': String(session.committed),
        ...(length !== undefined ? { 'Upload-Length': length } : { 'Upload-Defer-Length': '1' }),
        ...(session.attributes['metadata'] ? { 'Upload-Metadata': session.attributes['metadata'] } : {}),
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
    return { status: 204, headers: { 'Upload-Offset': String(done), ...(done === this.lengthOf(session) ? {} : expiresHeader(session)) } };
  }

  /** DELETE (termination): the upload and its bytes are gone; later requests answer 404. */
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
    if (length !== undefined && writer.receivedSize === length) return this.finish(writer, session);
    const committed = await writer.flush();
    await writer.close();
    return committed;
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

function contentTypeOf(req: TusRequest): string | undefined {
  return req.header('content-type')?.split(';')[0].trim().toLowerCase();
}

function expiresHeader(session: UploadSession): Record<string, string> {
  return session.deadline !== undefined ? { 'Upload-Expires': httpDate(session.deadline) } : {};
}
