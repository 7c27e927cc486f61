/**
 * One driver per upload face of Ferry, behind one interface (`UploadFace`), so that one contract
 * (apps/upload-contract-e2e/test/upload-contract.e2e-spec.ts) is written once and run against each:
 * ByteStream Write with a generic name, ByteStream Write of a REAPI CAS upload name, GCS v2
 * resumable writes over WriteObject and over BidiWriteObject, Synapse-style multipart parts, and
 * the Taskcluster object API's putUrl PUT, and tus 1.0 PATCHes.
 * Each driver speaks its protocol as a client would, over the wire, with the development
 * credentials (`dev` / `dev-secret`), and reports failures as a `FaceError` in the face's own terms.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { IncomingMessage, request as httpRequest } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import type {
  BidiWriteObjectRequest,
  BidiWriteObjectResponse__Output,
  GcsQueryWriteStatusResponse__Output,
  GcsWriteObjectRequest,
  WriteRequest,
} from '@ferry/protocol';
import { bearer, queryWriteStatus, readBytes } from './bytestream-client';
import type { FaceContext } from './ferry-stack';
import { readObject, startResumableWrite } from './gcs-client';
import { hawkHeader } from './hawk';
import { md5Hex } from './multipart-client';
import type { AppName } from './processes';
import { WAIT_MS, sleep } from './wait';

const MiB = 1024 * 1024;
const MESSAGE_BYTES = 1024 * 1024;
/** Part size of multipart uploads made by the driver (the smallest the API takes for a file of several parts). */
export const MULTIPART_PART_BYTES = 5 * MiB;
const TOKEN = 'dev-secret';
const HAWK_ID = 'dev';
/** The GCS bucket every name the drivers choose lives in (so that GCS reads them too). */
export const CONTRACT_BUCKET = 'contract';

/**
 * A failure as the face's client sees it: a gRPC status name (`ABORTED`, `NOT_FOUND`...) or, over
 * HTTP, the status and the `code` of its JSON body; `CONNECTION` when the server went away.
 */
export class FaceError extends Error {
  constructor(
    readonly face: string,
    readonly code: string,
    /** The HTTP status (HTTP faces only). */
    readonly status: number | undefined,
    message: string,
    /** The parsed HTTP body (HTTP faces only; none for an answer to HEAD, which HTTP gives no body). */
    readonly body?: unknown,
    /** The request was a HEAD: the status alone says what went wrong. */
    readonly head = false,
  ) {
    super(`${face}: ${status !== undefined ? `${status} ` : ''}${code}: ${message}`);
    this.name = 'FaceError';
  }
}

/** What a precise error must be: a gRPC status name, or an HTTP status with its body's `code`. */
export interface FaceErrorShape {
  code: string;
  status?: number;
  /** Matched against the error's message (a part of the contract only where the face promises words). */
  message?: RegExp;
}

/** Whether `err` is a FaceError of this shape. */
export function isFaceError(err: unknown, shape: FaceErrorShape): err is FaceError {
  return (
    err instanceof FaceError &&
    err.code === shape.code &&
    (shape.status === undefined || err.status === shape.status) &&
    (shape.message === undefined || shape.message.test(err.message))
  );
}

/** Bytes on their way to the server over one call or request. */
export interface Sending {
  /** Resolves once every byte of the range was handed to the transport; rejects if the call ended first. */
  readonly handed: Promise<void>;
  /** The server's answer to the call (the bytes are persisted, or the upload finished); rejects with a FaceError. */
  readonly done: Promise<void>;
  /** Cuts the call (the client goes away), if it is still open. */
  cut(): void;
}

export interface SendOptions {
  /** Keep the call open after the range (until `cut`), as a client in the middle of a stream. */
  hold?: boolean;
  /** Send these bytes instead of the upload's content (same length): another client's data. */
  bytes?: Buffer;
  /** Finish the upload with the last byte (default: only `finish()` finishes). */
  finish?: boolean;
}

/** What the client declares wrongly, on purpose (the verification cases). */
export type Wrong = 'digest' | 'size';

/** One upload through one face. */
export interface FaceUpload {
  readonly content: Buffer;
  /**
   * How far the server says it got: the bytes it holds durably, from the start (ByteStream
   * committed_size, GCS persisted_size, the added multipart parts; for an object API PUT, the whole
   * body once a PUT was answered 200, else 0). Rejects with the face's FaceError (NOT_FOUND / 404
   * once the upload is gone).
   */
  persisted(): Promise<number>;
  /** Sends bytes `[from, to)` on one call (multipart: the parts they cover, each added once PUT). */
  send(from: number, to: number, options?: SendOptions): Sending;
  /** Whether a writer (a call of `send` still open) is active on the upload, as the server shows it. */
  writerActive(): Promise<boolean>;
  /**
   * What a client does to get every byte to the server: asks how far it got (a face's "not found"
   * for a generic ByteStream name means 0, as its clients take it) and sends the rest, without
   * finishing; ABORTED (a killed writer's lease not yet lapsed) is retried. Afterwards `persisted()`
   * is the whole size (an object API PUT: stored).
   */
  sendRest(): Promise<void>;
  /** `sendRest`, then the finish that verifies and publishes. Returns the catalog name. */
  finish(): Promise<string>;
  /** Continues from `from` (what the client was last told) without asking again, and finishes. */
  resume(from: number): Promise<string>;
  /** The catalog name the upload publishes (multipart: once its file handle exists, else undefined). */
  catalogName(): Promise<string | undefined>;
}

export interface UploadFace {
  readonly name: 'bytestream' | 'reapi' | 'gcs' | 'gcsBidi' | 'multipart' | 'object' | 'tus';
  readonly label: string;
  /** The process that serves its uploads (the one the crash case kills). */
  readonly server: AppName;
  /** Whether an interrupted upload continues from what the server persisted; else its PUT starts again. */
  readonly resumable: boolean;
  /**
   * What a second writer meets while a first one is active: refused; or it takes over (its request
   * starts again and replaces the first's); or the first is asked to let go (tus: the second asks
   * how far it got, which stops the first with what it wrote kept, and continues from there).
   */
  readonly secondWriter: 'refused' | 'takesOver' | 'releasesFirst';
  /** The error of the writer that loses: the second (refused) or the first (takesOver, releasesFirst). */
  readonly writerConflict: FaceErrorShape;
  /** The precise error of a finish whose declared digest or size is wrong; absent: the face declares none. */
  readonly verification: Partial<Record<Wrong, FaceErrorShape>>;
  /**
   * After the worker expired an upload: what `persisted()` gives (an error, or 0), what a resume
   * meets, and what else a resume that races the expiry may meet (the expiry began under it).
   */
  readonly afterExpiry: { persisted: FaceErrorShape | 0; resume: FaceErrorShape; racing: FaceErrorShape[] };
  /** What an upload's lifetime counts from: its last activity (idle), or its creation (object API uploads). */
  readonly lifetimeFrom: 'activity' | 'creation';
  /** The smallest step by which `persisted()` advances while a stream runs (0: it never does). */
  granule(storage: 'fs' | 's3'): number;
  begin(content: Buffer, wrong?: Wrong): Promise<FaceUpload>;
}

const NOT_FOUND_HTTP = (code: string): FaceErrorShape => ({ code, status: 404 });
/** A ByteStream resume that read the session just before the worker began expiring it. */
const EXPIRED_UNDER_RESUME: FaceErrorShape = { code: 'NOT_FOUND', message: /not found|has just expired/ };

/** The six faces (GCS over two methods), over the stack `ctx`. */
export function uploadFaces(ctx: FaceContext): UploadFace[] {
  return [
    byteStreamFace(ctx),
    reapiFace(ctx),
    gcsFace(ctx, 'WriteObject'),
    gcsFace(ctx, 'BidiWriteObject'),
    multipartFace(ctx),
    objectFace(ctx),
    tusFace(ctx),
  ];
}

// --- gRPC helpers ------------------------------------------------------------------------------

function grpcError(face: string, err: unknown): FaceError {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e?.code !== 'number') return new FaceError(face, 'CONNECTION', undefined, String((err as Error)?.message ?? err));
  return new FaceError(face, grpc.status[e.code] ?? String(e.code), undefined, e.details ?? '');
}

const noop = () => undefined;

function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(err: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(noop);
  return { promise, resolve, reject };
}

/** A Sending whose promises nobody has to await: a failure nobody asked about is not an unhandled rejection. */
function settledQuietly(s: Sending): Sending {
  s.handed.catch(noop);
  s.done.catch(noop);
  return s;
}

/**
 * Writes `requests` to a client-streaming call honouring backpressure; half-closes after the last
 * unless `hold`. `start` opens the call with its response callback.
 */
function streamCall<Req, Res>(
  face: string,
  start: (callback: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientWritableStream<Req>,
  requests: Iterable<Req>,
  hold: boolean,
): Sending {
  let settled = false;
  let call: grpc.ClientWritableStream<Req> | undefined;
  const done = new Promise<void>((resolve, reject) => {
    call = start((err, res) => {
      settled = true;
      if (err || res === undefined) reject(grpcError(face, err));
      else resolve();
    });
  });
  const ended = done.then(noop, noop);
  const handed = (async () => {
    const c = call as grpc.ClientWritableStream<Req>;
    for (const req of requests) {
      if (settled) break;
      if (!c.write(req)) await Promise.race([new Promise((r) => c.once('drain', r)), ended]);
    }
    if (settled) await done; // it ended before every byte was handed: its error
    if (!hold) c.end();
  })();
  return settledQuietly({ handed, done, cut: () => call?.cancel() });
}

/**
 * Drives a BidiWriteObject call as the Go client does: writes the requests honouring backpressure,
 * and after one with `state_lookup` (and no `finish_write`) waits for the server's answer before
 * sending more; half-closes after the last unless `hold`. `done` resolves when the server ends the
 * call with OK (after `finish_write`: having answered the object).
 */
function bidiCall(
  face: string,
  open: () => grpc.ClientDuplexStream<BidiWriteObjectRequest, BidiWriteObjectResponse__Output>,
  requests: Iterable<BidiWriteObjectRequest>,
  hold: boolean,
): Sending {
  const call = open();
  let settled = false;
  let finishing = false;
  let object = false;
  let status: grpc.StatusObject | undefined;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (r: BidiWriteObjectResponse__Output) => {
      if (r.resource) object = true;
      waiters.shift()?.();
    });
    call.on('status', (s: grpc.StatusObject) => (status = s));
    call.on('error', (err) => {
      settled = true;
      wake();
      reject(grpcError(face, err));
    });
    call.on('end', () => {
      settled = true;
      wake();
      if (status && status.code !== grpc.status.OK) reject(grpcError(face, status));
      else if (finishing && !object) reject(new FaceError(face, 'NO_OBJECT', undefined, 'finish_write answered without the object'));
      else resolve();
    });
  });
  const ended = done.then(noop, noop);
  const handed = (async () => {
    for (const req of requests) {
      if (settled) break;
      if (req.finish_write) finishing = true;
      const answered = req.state_lookup && !req.finish_write ? new Promise<void>((r) => waiters.push(r)) : undefined;
      if (!call.write(req)) await Promise.race([new Promise((r) => call.once('drain', r)), ended]);
      if (answered) await Promise.race([answered, ended]);
    }
    if (settled) await done; // it ended before every byte was handed: its error
    if (!hold) call.end();
  })();
  return settledQuietly({ handed, done, cut: () => call.cancel() });
}

/**
 * Retries `fn` while it fails with ABORTED (a writer killed with its process holds its lease until
 * it lapses): over gRPC, or also over HTTP (409 ABORTED) when `http`.
 */
async function whileAborted<T>(fn: () => Promise<T>, http = false): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof FaceError && err.code === 'ABORTED' && (http || err.status !== 409)) || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** `[start, end)` of each message carrying `[from, to)`; one empty message when the range is (a bare finish). */
function* messages(from: number, to: number): Generator<[number, number]> {
  let pos = from;
  do {
    const end = Math.min(pos + MESSAGE_BYTES, to);
    yield [pos, end];
    pos = end;
  } while (pos < to);
}

function* byteStreamRequests(name: string, data: Buffer, from: number, to: number, finish: boolean): Generator<WriteRequest> {
  for (const [start, end] of messages(from, to)) {
    yield {
      resource_name: start === from ? name : '',
      write_offset: start,
      finish_write: finish && end === to,
      data: data.subarray(start, end),
    };
  }
}

function* gcsRequests(uploadId: string, data: Buffer, from: number, to: number, finish: boolean): Generator<GcsWriteObjectRequest> {
  for (const [start, end] of messages(from, to)) {
    const content = data.subarray(start, end);
    yield {
      ...(start === from ? { upload_id: uploadId } : {}),
      write_offset: start,
      checksummed_data: { content, crc32c: crc32c(content) },
      ...(finish && end === to ? { finish_write: true } : {}),
    };
  }
}

/** BidiWriteObject messages: at most 2 MiB each, as the Go client sends (MAX_WRITE_CHUNK_BYTES). */
const BIDI_MESSAGE_BYTES = 2 * MiB;
/**
 * The Go client's buffer (Writer.ChunkSize, 16 MiB by default; smaller here, so that objects of a
 * few MiB span several): the last message of each carries flush + state_lookup, and the client
 * waits for the persisted size it answers before it sends more.
 */
const BIDI_FLUSH_BYTES = 4 * MiB;

/**
 * BidiWriteObjectRequests as the Go client's resumable writer sends them: the first names the
 * upload, messages of at most 2 MiB, and the last of every BIDI_FLUSH_BYTES buffer (counted from
 * the object's start) and of the range carries flush + state_lookup; the finishing one carries
 * finish_write (and flush + state_lookup too, as Go sends it).
 */
function* bidiRequests(uploadId: string, data: Buffer, from: number, to: number, finish: boolean): Generator<BidiWriteObjectRequest> {
  let start = from;
  do {
    const boundary = (Math.floor(start / BIDI_FLUSH_BYTES) + 1) * BIDI_FLUSH_BYTES;
    const end = Math.min(start + BIDI_MESSAGE_BYTES, boundary, to);
    const content = data.subarray(start, end);
    const flush = end === to || end === boundary;
    yield {
      ...(start === from ? { upload_id: uploadId } : {}),
      write_offset: start,
      ...(end > start ? { checksummed_data: { content, crc32c: crc32c(content) } } : {}),
      ...(flush ? { flush: true, state_lookup: true } : {}),
      ...(finish && end === to ? { finish_write: true } : {}),
    };
    start = end;
  } while (start < to);
}

function uniqueName(face: string): string {
  return `${CONTRACT_BUCKET}/${face}-${randomBytes(6).toString('hex')}.bin`;
}

/** Another content of the same length: what a wrong declaration is computed from. */
function other(content: Buffer): Buffer {
  const o = Buffer.from(content);
  o[0] ^= 0xff;
  return o;
}

/** The shared driver of the ByteStream faces (generic names and REAPI upload names). */
abstract class ByteStreamUpload implements FaceUpload {
  /** End of the bytes handed on the open stream of `send` (what `writerActive` waits to see committed). */
  protected streaming = 0;

  constructor(
    protected readonly face: string,
    protected readonly ctx: FaceContext,
    readonly content: Buffer,
    protected readonly resource: string,
  ) {}

  abstract persisted(): Promise<number>;
  abstract catalogName(): Promise<string | undefined>;
  /** Where a client resumes from, as the face's clients read the status. */
  protected abstract resumePoint(): Promise<number>;

  send(from: number, to: number, options: SendOptions = {}): Sending {
    const data = options.bytes ?? this.content;
    const finish = options.finish ?? false;
    return streamCall<WriteRequest, { committed_size: unknown }>(
      this.face,
      (cb) => {
        this.streaming = to;
        return this.ctx.byteStream().Write(bearer(TOKEN), cb);
      },
      byteStreamRequests(this.resource, data, from, to, finish),
      options.hold ?? false,
    );
  }

  async writerActive(): Promise<boolean> {
    return (await this.persisted()) >= this.streaming && this.streaming > 0;
  }

  async sendRest(): Promise<void> {
    await whileAborted(async () => this.send(await this.resumePoint(), this.content.length).done);
  }

  async finish(): Promise<string> {
    await this.sendRest();
    // the bare finish, at the committed size (a finished generic name takes it as an idempotent success)
    await whileAborted(async () => this.send(this.content.length, this.content.length, { finish: true }).done);
    return (await this.catalogName()) as string;
  }

  async resume(from: number): Promise<string> {
    await this.send(from, this.content.length, { finish: true }).done;
    return (await this.catalogName()) as string;
  }

  protected async status(): Promise<number> {
    try {
      return (await queryWriteStatus(this.ctx.byteStream(), this.resource, bearer(TOKEN))).committed_size;
    } catch (err) {
      throw grpcError(this.face, err);
    }
  }
}

/** ByteStream Write of a generic resource name (the catalog name itself); nothing declared, nothing to verify. */
function byteStreamFace(ctx: FaceContext): UploadFace {
  class Upload extends ByteStreamUpload {
    persisted(): Promise<number> {
      return this.status();
    }
    async catalogName(): Promise<string> {
      return this.resource;
    }
    /** QueryWriteStatus; NOT_FOUND means 0 (README, "Upload, break, resume"). */
    protected async resumePoint(): Promise<number> {
      try {
        return await this.persisted();
      } catch (err) {
        if (err instanceof FaceError && err.code === 'NOT_FOUND') return 0;
        throw err;
      }
    }
  }
  return {
    name: 'bytestream',
    label: 'ByteStream Write',
    server: 'ingest-grpc',
    resumable: true,
    secondWriter: 'refused',
    writerConflict: { code: 'ABORTED' },
    verification: {},
    // the status query says NOT_FOUND (a client then starts again from 0); so does a Write at the
    // old offset, naming the resource and saying to start at 0 (and nothing is created)
    afterExpiry: {
      persisted: { code: 'NOT_FOUND' },
      resume: { code: 'NOT_FOUND', message: /not found: it is unknown or has expired; start it again at write_offset 0/ },
      racing: [EXPIRED_UNDER_RESUME],
    },
    lifetimeFrom: 'activity',
    granule: (storage) => (storage === 's3' ? 5 * MiB : 1),
    begin: async (content) => new Upload('ByteStream', ctx, content, uniqueName('bytestream')),
  };
}

/** ByteStream Write of a REAPI CAS upload `uploads/{uuid}/blobs/{sha256}/{size}`: size and sha256 verified. */
function reapiFace(ctx: FaceContext): UploadFace {
  class Upload extends ByteStreamUpload {
    constructor(
      content: Buffer,
      private readonly declared: { sha256: string; size: number },
    ) {
      super('REAPI CAS', ctx, content, `uploads/${randomUUID()}/blobs/${declared.sha256}/${declared.size}`);
    }
    persisted(): Promise<number> {
      return this.status();
    }
    protected resumePoint(): Promise<number> {
      return this.persisted();
    }
    async catalogName(): Promise<string> {
      return `blobs/${this.declared.sha256}/${this.declared.size}`;
    }
  }
  return {
    name: 'reapi',
    label: 'REAPI CAS upload over ByteStream',
    server: 'ingest-grpc',
    resumable: true,
    secondWriter: 'refused',
    writerConflict: { code: 'ABORTED' },
    verification: { digest: { code: 'INVALID_ARGUMENT' }, size: { code: 'INVALID_ARGUMENT' } },
    // an unknown REAPI upload is {0, false} (README, ByteStream behaviour): the client starts again
    afterExpiry: {
      persisted: 0,
      resume: { code: 'NOT_FOUND', message: /uploads\/.* not found: it is unknown or has expired/ },
      racing: [EXPIRED_UNDER_RESUME],
    },
    lifetimeFrom: 'activity',
    granule: (storage) => (storage === 's3' ? 5 * MiB : 1),
    begin: async (content, wrong) => {
      const sha256 = createHash('sha256')
        .update(wrong === 'digest' ? other(content) : content)
        .digest('hex');
      return new Upload(content, { sha256, size: content.length + (wrong === 'size' ? 1 : 0) });
    },
  };
}

/** GCS v2: StartResumableWrite (declaring the md5 and the object_size), WriteObject, QueryWriteStatus, ReadObject. */
/** GCS v2 resumable writes, over WriteObject (one client stream per range) or BidiWriteObject (as Go's writer). */
function gcsFace(ctx: FaceContext, method: 'WriteObject' | 'BidiWriteObject'): UploadFace {
  const face = method === 'WriteObject' ? 'GCS v2' : 'GCS v2 Bidi';
  class Upload implements FaceUpload {
    private streaming = 0;
    constructor(
      readonly content: Buffer,
      private readonly uploadId: string,
      private readonly object: string,
    ) {}

    async persisted(): Promise<number> {
      let s: GcsQueryWriteStatusResponse__Output;
      try {
        s = await new Promise((resolve, reject) =>
          ctx
            .storage()
            .QueryWriteStatus({ upload_id: this.uploadId }, bearer(TOKEN), (err, res) => (err || !res ? reject(err) : resolve(res))),
        );
      } catch (err) {
        throw grpcError(face, err);
      }
      return s.write_status === 'resource' ? Number(s.resource?.size) : Number(s.persisted_size);
    }

    send(from: number, to: number, options: SendOptions = {}): Sending {
      const data = options.bytes ?? this.content;
      const finish = options.finish ?? false;
      this.streaming = to;
      if (method === 'BidiWriteObject') {
        const requests = bidiRequests(this.uploadId, data, from, to, finish);
        return bidiCall(face, () => ctx.storage().BidiWriteObject(bearer(TOKEN)), requests, options.hold ?? false);
      }
      return streamCall<GcsWriteObjectRequest, unknown>(
        face,
        (cb) => ctx.storage().WriteObject(bearer(TOKEN), cb),
        gcsRequests(this.uploadId, data, from, to, finish),
        options.hold ?? false,
      );
    }

    async writerActive(): Promise<boolean> {
      return this.streaming > 0 && (await this.persisted()) >= this.streaming;
    }

    async sendRest(): Promise<void> {
      await whileAborted(async () => this.send(await this.persisted(), this.content.length).done);
    }

    async finish(): Promise<string> {
      await this.sendRest();
      await whileAborted(async () => this.send(this.content.length, this.content.length, { finish: true }).done);
      return `${CONTRACT_BUCKET}/${this.object}`;
    }

    async resume(from: number): Promise<string> {
      await this.send(from, this.content.length, { finish: true }).done;
      return `${CONTRACT_BUCKET}/${this.object}`;
    }

    catalogName = async () => `${CONTRACT_BUCKET}/${this.object}`;
  }
  return {
    name: method === 'WriteObject' ? 'gcs' : 'gcsBidi',
    label: method === 'WriteObject' ? 'GCS v2 resumable write' : 'GCS v2 BidiWriteObject (as the Go client)',
    server: 'ingest-grpc',
    resumable: true,
    secondWriter: 'refused',
    writerConflict: { code: 'ABORTED' },
    verification: { digest: { code: 'INVALID_ARGUMENT' }, size: { code: 'OUT_OF_RANGE' } },
    afterExpiry: { persisted: { code: 'NOT_FOUND' }, resume: { code: 'NOT_FOUND' }, racing: [] },
    lifetimeFrom: 'activity',
    granule: (storage) => (storage === 's3' ? 5 * MiB : 1),
    begin: async (content, wrong) => {
      const object = uniqueName('gcs').slice(CONTRACT_BUCKET.length + 1);
      const md5 = createHash('md5')
        .update(wrong === 'digest' ? other(content) : content)
        .digest();
      let uploadId: string;
      try {
        uploadId = await startResumableWrite(
          ctx.storage(),
          CONTRACT_BUCKET,
          object,
          { objectSize: content.length + (wrong === 'size' ? 1 : 0), checksums: { md5_hash: md5 } },
          bearer(TOKEN),
        );
      } catch (err) {
        throw grpcError(face, err);
      }
      return new Upload(content, uploadId, object);
    },
  };
}

// --- HTTP helpers ------------------------------------------------------------------------------

interface HttpAnswer {
  status: number;
  body: unknown;
  text: string;
}

function parseBody(contentType: string | null | undefined, text: string): unknown {
  if ((contentType ?? '').includes('json') && text) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

/** A FaceError for an HTTP answer: its status and the `code` and `message` of its JSON body. */
function httpError(face: string, a: HttpAnswer): FaceError {
  const body = a.body as { code?: unknown; message?: unknown } | undefined;
  const code = typeof body?.code === 'string' ? body.code : `HTTP_${a.status}`;
  const message = typeof body?.message === 'string' ? body.message : a.text.slice(0, 300);
  return new FaceError(face, code, a.status, message, a.body);
}

async function call(face: string, url: string, init: RequestInit): Promise<HttpAnswer> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'manual', ...init });
  } catch (err) {
    throw new FaceError(face, 'CONNECTION', undefined, (err as Error).message);
  }
  const text = await res.text();
  return { status: res.status, body: parseBody(res.headers.get('content-type'), text), text };
}

/** `call`, throwing the FaceError of any answer but `ok`. */
async function expectOk(face: string, url: string, init: RequestInit, ok: number[] = [200, 201]): Promise<HttpAnswer> {
  const a = await call(face, url, init);
  if (!ok.includes(a.status)) throw httpError(face, a);
  return a;
}

/**
 * A PUT (or `method`) of `body` (its whole length declared) whose bytes `[0, upTo)` are sent; the request stays
 * open after them until cut when `upTo` is short of the body (a client in the middle of its PUT).
 * `done` resolves on a 2xx answer.
 */
function putRequest(face: string, url: string, headers: Record<string, string>, body: Buffer, upTo: number, method = 'PUT'): Sending {
  const req = httpRequest(url, { method, headers: { ...headers, 'Content-Length': String(body.length) } });
  let settled = false;
  const done = new Promise<void>((resolve, reject) => {
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new FaceError(face, 'CONNECTION', undefined, err.message)));
      res.on('end', () => {
        settled = true;
        const text = Buffer.concat(chunks).toString();
        const answer = { status: res.statusCode ?? 0, text, body: parseBody(res.headers['content-type'], text) };
        if (answer.status >= 200 && answer.status < 300) resolve();
        else reject(httpError(face, answer));
      });
    });
    req.on('error', (err) => {
      settled = true;
      reject(new FaceError(face, 'CONNECTION', undefined, err.message));
    });
  });
  const ended = done.then(noop, noop);
  const handed = (async () => {
    for (let pos = 0; pos < upTo && !settled; pos += 256 * 1024) {
      if (!req.write(body.subarray(pos, Math.min(pos + 256 * 1024, upTo)))) {
        await Promise.race([new Promise((r) => req.once('drain', r)), ended]);
      }
    }
    if (settled && upTo > 0) await done; // answered (refused) before every byte was handed: its error
    if (upTo >= body.length) req.end();
  })();
  return settledQuietly({ handed, done, cut: () => req.destroy() });
}

/** Synapse-style multipart: start, presigned part URLs, PUT, add, complete (assembled by the worker). */
function multipartFace(ctx: FaceContext): UploadFace {
  const face = 'multipart';
  const auth = { authorization: `Bearer ${TOKEN}` };
  const json = { ...auth, 'content-type': 'application/json' };
  type Status = { uploadId: string; state: string; partsState: string; resultFileHandleId?: string };
  const PART = MULTIPART_PART_BYTES;

  class Upload implements FaceUpload {
    private readonly partOpen = new Set<number>();
    constructor(
      readonly content: Buffer,
      private readonly uploadId: string,
    ) {}

    private url(path: string): string {
      return `${ctx.multipartBase}/file/multipart/${this.uploadId}${path}`;
    }

    async status(): Promise<Status> {
      return (await expectOk(face, this.url(''), { headers: auth })).body as Status;
    }

    async persisted(): Promise<number> {
      const s = await this.status();
      if (s.state === 'COMPLETED') return this.content.length;
      const added = s.partsState.indexOf('0');
      return added < 0 ? this.content.length : Math.min(added * PART, this.content.length);
    }

    /** PUTs part `n` (its bytes up to `upTo`; held open if short of the part) and, once PUT whole, adds it. */
    private part(n: number, data: Buffer, upTo: number): Sending {
      const body = data.subarray((n - 1) * PART, Math.min(n * PART, data.length));
      let cut = false;
      const put = deferred<Sending>();
      const done = (async () => {
        const urls = await expectOk(face, this.url('/presigned/url/batch'), {
          method: 'POST',
          headers: json,
          body: JSON.stringify({ uploadId: this.uploadId, partNumbers: [n] }),
        });
        const u = (urls.body as { partPresignedUrls: { uploadPresignedUrl: string; signedHeaders: Record<string, string> }[] })
          .partPresignedUrls[0];
        if (cut) throw new FaceError(face, 'CANCELLED', undefined, 'cut before the PUT began');
        const sending = putRequest(face, u.uploadPresignedUrl, u.signedHeaders ?? {}, body, upTo);
        put.resolve(sending);
        this.partOpen.add(n);
        try {
          await sending.done;
        } finally {
          this.partOpen.delete(n);
        }
        const add = await expectOk(face, this.url(`/add/${n}?partMD5Hex=${md5Hex(body)}`), { method: 'PUT', headers: auth });
        const r = add.body as { addPartState: string; errorMessage?: string };
        if (r.addPartState !== 'ADD_SUCCESS') throw new FaceError(face, 'ADD_FAILED', add.status, r.errorMessage ?? '', r);
      })();
      done.catch(put.reject);
      return settledQuietly({
        handed: put.promise.then((sending) => sending.handed),
        done,
        cut: () => {
          cut = true;
          void put.promise.then((sending) => sending.cut(), noop);
        },
      });
    }

    send(from: number, to: number, options: SendOptions = {}): Sending {
      if (from % PART !== 0) throw new Error(`multipart sends whole parts: ${from} is not at a part boundary`);
      const data = options.bytes ?? this.content;
      let cut = false;
      let current: Sending | undefined;
      const last = deferred<Sending>();
      const done = (async () => {
        for (let n = from / PART + 1; (n - 1) * PART < to; n++) {
          if (cut) throw new FaceError(face, 'CANCELLED', undefined, 'cut');
          const end = Math.min(to, n * PART, data.length);
          current = this.part(n, data, end - (n - 1) * PART);
          if (end >= to) last.resolve(current);
          await current.done;
        }
        if (options.finish && to >= data.length) await this.complete();
      })();
      done.catch(last.reject);
      return settledQuietly({
        handed: last.promise.then((part) => part.handed),
        done,
        cut: () => {
          cut = true;
          current?.cut();
        },
      });
    }

    /** A PUT of a part is in progress: adding it is refused as such (a wrong md5: the add can never succeed). */
    async writerActive(): Promise<boolean> {
      for (const n of this.partOpen) {
        const add = await expectOk(face, this.url(`/add/${n}?partMD5Hex=${'0'.repeat(32)}`), { method: 'PUT', headers: auth });
        if (/in progress/.test((add.body as { errorMessage?: string }).errorMessage ?? '')) return true;
      }
      return false;
    }

    /** Complete, again while it answers 202 (assembling); the file handle's catalog name. */
    private async complete(): Promise<string> {
      for (const deadline = Date.now() + 4 * WAIT_MS; ;) {
        const done = await expectOk(face, this.url('/complete'), { method: 'PUT', headers: auth }, [200, 202]);
        const s = done.body as Status;
        if (done.status === 200 && s.resultFileHandleId) return `fileHandle/${s.resultFileHandleId}`;
        if (Date.now() > deadline) throw new FaceError(face, 'TIMEOUT', done.status, `still ${s.state}`);
      }
    }

    /** The missing parts, PUT and added (again while a killed PUT's lease holds one: 409 ABORTED). */
    async sendRest(): Promise<void> {
      const s = await this.status();
      if (s.state !== 'UPLOADING') return;
      for (let i = 0; i < s.partsState.length; i++) {
        if (s.partsState[i] === '1') continue;
        const deadline = Date.now() + WAIT_MS;
        for (;;) {
          try {
            await this.send(i * PART, Math.min((i + 1) * PART, this.content.length)).done;
            break;
          } catch (err) {
            if (!(err instanceof FaceError && err.status === 409 && err.code === 'ABORTED') || Date.now() > deadline) throw err;
            await sleep(100);
          }
        }
      }
    }

    async finish(): Promise<string> {
      await this.sendRest();
      return this.complete();
    }

    async resume(from: number): Promise<string> {
      if (from < this.content.length) await this.send(from, this.content.length).done;
      return this.complete();
    }

    async catalogName(): Promise<string | undefined> {
      const s = await this.status();
      return s.resultFileHandleId ? `fileHandle/${s.resultFileHandleId}` : undefined;
    }
  }

  return {
    name: 'multipart',
    label: 'multipart parts',
    server: 'multipart-api',
    resumable: true,
    secondWriter: 'refused',
    writerConflict: { code: 'ABORTED', status: 409 },
    // the assembly's MD5 check fails: the upload is FAILED, complete answers 400 saying so
    verification: { digest: { code: 'INVALID_ARGUMENT', status: 400, message: /the upload failed/ } },
    afterExpiry: {
      persisted: NOT_FOUND_HTTP('NOT_FOUND'),
      resume: NOT_FOUND_HTTP('NOT_FOUND'),
      // an assembly that finds the parts gone fails its check: nothing is published
      racing: [{ code: 'INVALID_ARGUMENT', status: 400, message: /the upload failed/ }],
    },
    lifetimeFrom: 'activity',
    granule: () => PART,
    begin: async (content, wrong) => {
      if (wrong === 'size') throw new Error('multipart parts are exactly sized: no size to declare wrongly');
      const started = await expectOk(face, `${ctx.multipartBase}/file/multipart`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({
          fileName: `contract-${randomBytes(6).toString('hex')}.bin`,
          contentType: 'application/octet-stream',
          contentMD5Hex: md5Hex(wrong === 'digest' ? other(content) : content),
          fileSizeBytes: content.length,
          partSizeBytes: PART,
        }),
      });
      return new Upload(content, (started.body as Status).uploadId);
    },
  };
}

/** The Taskcluster object API: createUpload (putUrl), the PUT, finishUpload (sha256), start-download; Hawk-signed. */
function objectFace(ctx: FaceContext): UploadFace {
  const face = 'object API';
  const api = (path: string) => `${ctx.objectBase}/api/object/v1${path}`;
  const hawk = (url: string, method: string) => ({
    authorization: hawkHeader(url, method, HAWK_ID, TOKEN),
    'content-type': 'application/json',
  });
  const post = (method: string, path: string, body: unknown) => {
    const url = api(path);
    return call(face, url, { method, headers: hawk(url, method), body: JSON.stringify(body) });
  };

  class Upload implements FaceUpload {
    /** A PUT was answered 200: the server holds the whole body. */
    private stored = false;
    private put?: { url: string; headers: Record<string, string> };
    private readonly uploadId = Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64url'); // a slugid
    private readonly expires = new Date(Date.now() + 86_400_000).toISOString();
    private readonly path: string;

    constructor(
      readonly content: Buffer,
      private readonly name: string,
      private readonly declared: { sha256: string; contentLength: number },
    ) {
      this.path = encodeURIComponent(name);
    }

    /** createUpload (idempotent while the upload lives): a putUrl to PUT the bytes to. */
    async create(): Promise<void> {
      const a = await post('PUT', `/upload/${this.path}`, {
        projectId: 'contract',
        uploadId: this.uploadId,
        expires: this.expires,
        proposedUploadMethods: { putUrl: { contentType: 'application/octet-stream', contentLength: this.declared.contentLength } },
      });
      if (a.status !== 200) throw httpError(face, a);
      const method = (a.body as { uploadMethod: { putUrl: { url: string; headers: Record<string, string> } } }).uploadMethod.putUrl;
      this.put = { url: method.url, headers: { 'Content-Type': method.headers['Content-Type'] } };
    }

    /**
     * A finishUpload naming another uploadId changes nothing: 409 while the upload lives, 404 once
     * it is gone (and nothing was published), 200 once finished.
     */
    private async probe(): Promise<HttpAnswer> {
      const slug = Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64url');
      return post('POST', `/finish-upload/${this.path}`, { projectId: 'contract', uploadId: slug });
    }

    async persisted(): Promise<number> {
      const a = await this.probe();
      if (a.status === 404) throw httpError(face, a);
      if (a.status === 200) return this.content.length;
      return this.stored ? this.content.length : 0;
    }

    send(from: number, to: number, options: SendOptions = {}): Sending {
      if (from !== 0) throw new Error('an object API PUT cannot resume: it starts again from 0');
      const put = this.put as { url: string; headers: Record<string, string> };
      const s = putRequest(face, put.url, put.headers, options.bytes ?? this.content, to);
      const done = s.done.then(() => {
        this.stored = true;
      });
      return settledQuietly({ handed: s.handed, done, cut: s.cut });
    }

    /** The PUT holds the upload: finishing is refused as "in progress" (asked only while nothing is stored, so it cannot publish). */
    async writerActive(): Promise<boolean> {
      if (this.stored) throw new Error('writerActive asks by finishing: only before any bytes are stored');
      const a = await post('POST', `/finish-upload/${this.path}`, { projectId: 'contract', uploadId: this.uploadId });
      return a.status === 409 && /in progress/.test(String((a.body as { message?: string }).message));
    }

    /** The PUT again if none was answered 200 (with a putUrl from createUpload again, as after a crash). */
    async sendRest(): Promise<void> {
      if (this.stored) return;
      await this.create();
      await this.send(0, this.content.length).done;
    }

    async finish(): Promise<string> {
      await this.sendRest();
      return this.resume(this.content.length);
    }

    async resume(from: number): Promise<string> {
      if (from < this.content.length) await this.send(0, this.content.length).done;
      const a = await post('POST', `/finish-upload/${this.path}`, {
        projectId: 'contract',
        uploadId: this.uploadId,
        hashes: { sha256: this.declared.sha256 },
      });
      if (a.status !== 200) throw httpError(face, a);
      return this.name;
    }

    catalogName = async () => this.name;
  }

  return {
    name: 'object',
    label: 'object API putUrl PUT',
    server: 'object-api',
    resumable: false,
    secondWriter: 'takesOver',
    writerConflict: { code: 'RequestConflict', status: 409 },
    verification: {
      digest: { code: 'InputError', status: 400, message: /nothing was published/ },
      // the body is shorter than the declared contentLength: the PUT is refused, and nothing is kept
      size: { code: 'InputValidationError', status: 400, message: /not the declared contentLength/ },
    },
    afterExpiry: { persisted: NOT_FOUND_HTTP('ResourceNotFound'), resume: NOT_FOUND_HTTP('ResourceNotFound'), racing: [] },
    lifetimeFrom: 'creation',
    granule: () => 0,
    begin: async (content, wrong) => {
      const sha256 = createHash('sha256')
        .update(wrong === 'digest' ? other(content) : content)
        .digest('hex');
      const upload = new Upload(content, uniqueName('object'), { sha256, contentLength: content.length + (wrong === 'size' ? 1 : 0) });
      await upload.create();
      return upload;
    },
  };
}

/**
 * tus 1.0 on multipart-api `/files/`: creation with a deferred length, PATCHes at the server's
 * offset (HEAD), and a last PATCH declaring `Upload-Length`, which finishes: so that, as for the
 * other faces, sending every byte does not yet publish. A wrong declared digest is a chunk whose
 * `Upload-Checksum` is another content's (460, the chunk discarded).
 */
/** What a HEAD's status means, in the terms of the JSON bodies the other requests carry. */
const HEAD_CODES: Record<number, string> = { 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 409: 'ABORTED' };

function tusFace(ctx: FaceContext): UploadFace {
  const face = 'tus';
  const tus = { authorization: `Bearer ${TOKEN}`, 'tus-resumable': '1.0.0' };

  class Upload implements FaceUpload {
    /** PATCHes of ours not answered yet (tus has no way to ask the server without taking the upload over). */
    private open = 0;

    constructor(
      readonly content: Buffer,
      private readonly url: string,
      private readonly checksummed: Buffer | undefined,
    ) {}

    /** HEAD's Upload-Offset (a HEAD asks a PATCH still running to let go first, as tusd's lock release). */
    async persisted(): Promise<number> {
      const res = await fetchAnswer(face, this.url, { method: 'HEAD', headers: tus });
      if (res.status !== 200)
        throw new FaceError(
          face,
          HEAD_CODES[res.status] ?? `HTTP_${res.status}`,
          res.status,
          `HEAD answered ${res.status}`,
          undefined,
          true,
        );
      return Number(res.headers.get('upload-offset'));
    }

    send(from: number, to: number, options: SendOptions = {}): Sending {
      const data = options.bytes ?? this.content;
      const body = data.subarray(from, options.hold ? data.length : to);
      const headers: Record<string, string> = { ...tus, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(from) };
      if (options.finish && to >= data.length) headers['upload-length'] = String(data.length);
      if (this.checksummed)
        headers['upload-checksum'] = `sha256 ${createHash('sha256').update(this.checksummed.subarray(from, to)).digest('base64')}`;
      const s = putRequest(face, this.url, headers, body, to - from, 'PATCH');
      this.open++;
      void s.done.then(noop, noop).finally(() => this.open--);
      return s;
    }

    async writerActive(): Promise<boolean> {
      return this.open > 0;
    }

    async sendRest(): Promise<void> {
      const from = await whileAborted(() => this.persisted(), true);
      if (from < this.content.length) await whileAborted(() => this.send(from, this.content.length).done, true);
    }

    async finish(): Promise<string> {
      await this.sendRest();
      return this.resume(this.content.length);
    }

    /** PATCHes the rest from `from` with the length declared: the upload finishes with its last byte. */
    async resume(from: number): Promise<string> {
      await this.send(from, this.content.length, { finish: true }).done;
      return this.name();
    }

    private name(): string {
      return `tus/${this.url.slice(this.url.lastIndexOf('/') + 1)}`;
    }

    catalogName = async () => this.name();
  }

  return {
    name: 'tus',
    label: 'tus PATCH',
    server: 'multipart-api',
    resumable: true,
    secondWriter: 'releasesFirst',
    writerConflict: { code: 'ABORTED', status: 409 },
    verification: { digest: { code: 'INVALID_ARGUMENT', status: 460, message: /Upload-Checksum/ } },
    afterExpiry: {
      persisted: NOT_FOUND_HTTP('NOT_FOUND'),
      resume: NOT_FOUND_HTTP('NOT_FOUND'),
      // the PATCH read the upload as the expiry began: its lease is refused
      racing: [{ code: 'ABORTED', status: 409 }],
    },
    lifetimeFrom: 'creation',
    // HEAD stops a running PATCH and answers what it made durable: any byte
    granule: () => 1,
    begin: async (content, wrong) => {
      if (wrong === 'size') throw new Error('tus declares its length once, with the last PATCH: nothing to declare wrongly');
      const res = await fetchAnswer(face, `${ctx.multipartBase}/files/`, {
        method: 'POST',
        headers: { ...tus, 'upload-defer-length': '1', 'upload-metadata': `filename ${Buffer.from('contract.bin').toString('base64')}` },
      });
      const text = await res.text();
      if (res.status !== 201) throw httpError(face, { status: res.status, text, body: parseBody(res.headers.get('content-type'), text) });
      return new Upload(content, res.headers.get('location') as string, wrong === 'digest' ? other(content) : undefined);
    },
  };
}

/** `fetch`, with a connection that failed reported as the face's CONNECTION error. */
async function fetchAnswer(face: string, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    throw new FaceError(face, 'CONNECTION', undefined, (err as Error).message);
  }
}

// --- reads -------------------------------------------------------------------------------------

/** What one read path answered for a name: the bytes, or the face's "not found" error. */
export type ReadOutcome = { found: true; data: Buffer } | { found: false; error: FaceError };

/**
 * Reads `name` through every face's read path that can name it: ByteStream Read, GCS ReadObject
 * (names `bucket/object` with a valid bucket), the object API's start-download and its signed URL,
 * and a multipart file handle's signed URL (`fileHandle/{id}`). A failure other than the face's
 * "not found" throws.
 */
export async function readEverywhere(ctx: FaceContext, name: string): Promise<Record<string, ReadOutcome>> {
  const out: Record<string, ReadOutcome> = {};
  const notFound = (error: FaceError, shape: FaceErrorShape): ReadOutcome => {
    if (!isFaceError(error, shape)) throw error;
    return { found: false, error };
  };

  try {
    out['ByteStream Read'] = { found: true, data: (await readBytes(ctx.byteStream(), name, { metadata: bearer(TOKEN) })).data };
  } catch (err) {
    out['ByteStream Read'] = notFound(grpcError('ByteStream Read', err), { code: 'NOT_FOUND' });
  }

  const gcs = /^([a-z0-9][a-z0-9_-]{1,61}[a-z0-9])\/(.+)$/.exec(name);
  if (gcs) {
    try {
      out['GCS ReadObject'] = { found: true, data: (await readObject(ctx.storage(), gcs[1], gcs[2], {}, bearer(TOKEN))).data };
    } catch (err) {
      out['GCS ReadObject'] = notFound(grpcError('GCS ReadObject', err), { code: 'NOT_FOUND' });
    }
  }

  const face = 'object API download';
  const url = `${ctx.objectBase}/api/object/v1/start-download/${encodeURIComponent(name)}`;
  const start = await call(face, url, {
    method: 'PUT',
    headers: { authorization: hawkHeader(url, 'PUT', HAWK_ID, TOKEN), 'content-type': 'application/json' },
    body: JSON.stringify({ acceptDownloadMethods: { getUrl: true } }),
  });
  if (start.status === 200) {
    out[face] = { found: true, data: await fetchBytes((start.body as { url: string }).url) };
  } else {
    out[face] = notFound(httpError(face, start), { code: 'ResourceNotFound', status: 404 });
  }

  const handle = /^fileHandle\/(.+)$/.exec(name);
  if (handle) {
    const f = 'multipart file handle';
    const a = await call(f, `${ctx.multipartBase}/fileHandle/${handle[1]}/url?redirect=false`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    if (a.status === 200) out[f] = { found: true, data: await fetchBytes(a.text) };
    else out[f] = notFound(httpError(f, a), { code: 'NOT_FOUND', status: 404 });
  }
  return out;
}

async function fetchBytes(url: string): Promise<Buffer> {
  const res = await fetch(url);
  if (res.status !== 200) throw new FaceError('download', `HTTP_${res.status}`, res.status, await res.text());
  return Buffer.from(await res.arrayBuffer());
}
