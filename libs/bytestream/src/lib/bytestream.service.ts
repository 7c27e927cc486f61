import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Authenticator, Principal, Scopes } from '@ferry/auth';
import { type CatalogObject, assertClientWritable } from '@ferry/catalog';
import type { BoundedCache } from '@ferry/cache';
import { ZstdInflater, zstdAvailable, zstdCompressor, zstdDecompress } from '@ferry/compression';
import { InvalidArgumentError, NotFoundError, OutOfRangeError } from '@ferry/errors';
import { nameTag } from '@ferry/redis';
import { SHA256_EMPTY } from '@ferry/storage';
import { Digests, Expectation, UploadEngine, UploadWriter } from '@ferry/uploads';
import { ClientTool, ZeroResume, answersZero } from './client-tool';
import { ReapiInstances, ResourceName, casObjectName, parseResourceName } from './resource-name';

/** One WriteRequest as decoded (defaults filled in). */
export interface WriteMessage {
  resource_name: string;
  write_offset: number;
  finish_write: boolean;
  data: Buffer;
}

export interface ReadResult {
  /** Bytes of the requested range (compressed for a compressed-blobs name), in chunks of at most `READ_CHUNK_BYTES`. */
  stream: Readable;
  /** Bytes of the blob the stream carries (before compression). */
  length: number;
}

export interface WriteStatus {
  committed_size: number;
  complete: boolean;
}

export const READ_CHUNK_BYTES = 2 * 1024 * 1024;

/** A compressed upload in one message is decompressed whole up to this size; a larger one streams through a session. */
const WHOLE_INFLATE_BYTES = 4 * 1024 * 1024;

export interface ByteStreamOptions {
  maxNameBytes: number;
  /** REAPI instance names served (upload and download names carry one). */
  instances: ReapiInstances;
  /** Largest CAS blob accepted (max_cas_blob_size_bytes); 0: no limit. */
  maxBlobBytes: number;
  /** Who is told 0 for an unfinished REAPI upload (FERRY_REAPI_ZERO_RESUME); default `auto`. */
  zeroResume?: ZeroResume;
  /** The bounded cache (FERRY_CACHE_MAX_BYTES): a new CAS upload is admitted first, a CAS read touches its blob. */
  cache?: BoundedCache;
}

/**
 * google.bytestream.ByteStream over the upload engine, independent of the transport.
 *
 * Naming: a generic resource name is the catalog object's name; a REAPI upload
 * `[inst/]uploads/{uuid}/blobs/{sha256}/{size}` publishes the blob and the catalog object
 * `blobs/{sha256}/{size}` (the name it is read back by with an empty instance).
 *
 * Immutability: writing a finished generic name again with identical content succeeds; with other
 * content it fails with ALREADY_EXISTS and nothing changes.
 *
 * Compressed blobs (`compressed-blobs/zstd/{hash}/{size}`, when zstd is available): a Write's data
 * is a zstd stream of the blob from its first `write_offset` on, an offset in the uncompressed
 * blob; the offsets of the messages after it count the compressed bytes sent (REAPI's rule). Ferry
 * decompresses as it receives, so staging, the committed size QueryWriteStatus answers (where a
 * resumed Write starts a new zstd stream) and the published blob are the uncompressed bytes; a
 * bad, truncated or oversized stream drops the upload. A finished Write answers the first offset
 * plus the compressed bytes (what Bazel checks), -1 when the blob was already there. A Read sends
 * a zstd stream of the blob from `read_offset` (uncompressed) on; `read_limit` must be 0.
 *
 * Resuming REAPI uploads: QueryWriteStatus of an unfinished REAPI upload answers its committed
 * size (0 if Ferry holds nothing), and current clients resume from there. Bazel 1.2 to 2.1 cannot:
 * told a partial size, its upload fails (a NullPointerException in its Chunker.seek); told 0, it
 * re-sends from 0. Those releases name themselves in the call's metadata (`tool_details`, on
 * QueryWriteStatus as on every call; see `BAZEL_RESUMES_FROM`) and are answered 0 (option
 * `zeroResume`: `auto`; `always` answers 0 to every client, `never` to none). So, whatever the
 * setting, a Write of a REAPI upload may start anywhere from 0 to the committed size: the bytes
 * Ferry already holds are skipped (not written again; the blob's digest still covers every byte).
 * A client told 0 re-sends bytes over the network, but they are never rewritten.
 *
 * A Write resuming (write_offset > 0) an upload Ferry does not hold, never begun or expired by the
 * worker, is NOT_FOUND and creates nothing: the client starts it again at 0.
 */
export class ByteStreamService {
  constructor(
    private readonly engine: UploadEngine,
    private readonly auth: Authenticator,
    private readonly options: ByteStreamOptions,
  ) {}

  private parse(name: string): ResourceName {
    const target = parseResourceName(name, this.options.maxNameBytes);
    if (target.kind !== 'generic') this.options.instances.check(target.instance);
    if (target.kind !== 'generic' && target.compressor && !zstdAvailable()) {
      throw new InvalidArgumentError('zstd is not available on this server (see its Capabilities); use blobs/ names');
    }
    return target;
  }

  /** Upload state lives under an id derived from the whole name (REAPI clients reuse uuids). */
  static uploadId(name: string): string {
    return `bs_${nameTag(name)}`;
  }

  async write(principal: Principal, messages: AsyncIterable<WriteMessage>): Promise<number> {
    const it = messages[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) throw new InvalidArgumentError('empty Write stream: the first request must carry resource_name');
    const req = first.value;
    if (!req.resource_name) throw new InvalidArgumentError('resource_name is required on the first WriteRequest');
    const target = this.parse(req.resource_name);
    this.auth.require(principal, Scopes.write(target.name));
    assertClientWritable(target.name);
    if (target.kind === 'cas-download') {
      throw new InvalidArgumentError('cannot write to a download name; write to {instance}/uploads/{uuid}/blobs/{hash}/{size}');
    }
    if (req.write_offset < 0) throw new InvalidArgumentError(`write_offset ${req.write_offset} is negative`);

    if (target.kind === 'cas-upload') {
      const max = this.options.maxBlobBytes;
      if (max > 0 && target.size > max)
        throw new InvalidArgumentError(`blob of ${target.size} bytes exceeds max_cas_blob_size_bytes ${max}`);
      // The blob is already here (or empty): the upload is done before it starts. It is in use
      // again (the client will name it in an action result): the bounded cache keeps it.
      if (await this.engine.hasBlob(target.sha256, target.size)) {
        await this.options.cache?.index.touchBlobs([target]);
        return target.compressor ? -1 : target.size;
      }
    }

    const uploadId = ByteStreamService.uploadId(req.resource_name);
    let session = await this.engine.getSession(uploadId);
    if (target.kind === 'generic') {
      const existing = await this.engine.object(target.name);
      if (existing) {
        // what QueryWriteStatus answers for a finished name, even while it is being written again
        if (req.write_offset === existing.size) return this.drainFinished(existing, req, it);
        if (!session && req.write_offset !== 0) {
          throw new InvalidArgumentError(
            `${target.name} is complete (${existing.size} bytes): write from offset 0 to verify identical content, or query its status`,
          );
        }
      }
    }
    // A resume of an upload Ferry does not hold (never begun, or expired by the worker): creating a
    // session for it would only leave an empty one behind, and the offset could never match.
    if (!session && req.write_offset !== 0) throw unknownUpload(req.resource_name);
    // a new CAS upload must fit in the bounded cache (RESOURCE_EXHAUSTED before anything is stored)
    if (!session && target.kind === 'cas-upload') await this.options.cache?.admit(target.size);
    const compressed = target.kind === 'cas-upload' && target.compressor;
    // (a compressed message may stand for a large blob: beyond WHOLE_INFLATE_BYTES it streams)
    if (!session && req.finish_write && req.write_offset === 0 && (!compressed || target.size <= WHOLE_INFLATE_BYTES)) {
      // The whole upload is this one message: anything after it is an error, and then nothing is
      // published. Otherwise store and publish it in one step, without a resumable session.
      if (!(await it.next()).done) throw new InvalidArgumentError('WriteRequest after finish_write=true');
      const data = compressed ? zstdDecompress(req.data, target.size) : req.data;
      const object = await this.engine.publishWhole(data, this.expectation(target), (size, digests) =>
        this.describe(target, principal, size, digests),
      );
      return compressed ? req.data.length : object.size;
    }
    try {
      session ??= await this.engine.getOrCreateSession({
        id: uploadId,
        name: req.resource_name,
        protocol: 'bytestream',
        owner: principal.clientId,
        attributes: target.kind === 'cas-upload' ? { sha256: target.sha256, size: String(target.size) } : {},
      });
      if (!this.offsetAccepted(target, req.write_offset, session.committed)) throw offsetMismatch(req.write_offset, session.committed);
      const writer = await this.engine.openWriter(uploadId);
      try {
        return await this.stream(principal, target, req, it, writer);
      } finally {
        await writer.close();
      }
    } catch (err) {
      // The session store and the staging name the upload by its id, which the client never sent:
      // gone under this Write (expired, or being expired), it is named by the client's resource name.
      if (err instanceof NotFoundError) throw unknownUpload(req.resource_name, err);
      throw err;
    }
  }

  private async stream(
    principal: Principal,
    target: Exclude<ResourceName, { kind: 'cas-download' }>,
    first: WriteMessage,
    rest: AsyncIterator<WriteMessage>,
    writer: UploadWriter,
  ): Promise<number> {
    // Checked again under the lease: another writer may have moved the upload in between.
    if (!this.offsetAccepted(target, first.write_offset, writer.committedSize))
      throw offsetMismatch(first.write_offset, writer.committedSize);
    const declaredSize = target.kind === 'cas-upload' ? target.size : undefined;
    // a compressed upload's data decompresses to the blob from the first offset on
    const inflater = target.kind === 'cas-upload' && target.compressor ? new ZstdInflater(target.size - first.write_offset) : undefined;
    // (lazily: each piece is written before the next is decompressed, so a small message that
    // decompresses far never sits in memory whole)
    function* pieces(data: Buffer): Generator<Buffer> {
      if (data.length === 0) return;
      if (!inflater) return yield data;
      const inflated = inflater.pieces(data);
      for (;;) {
        const next = refusing(() => inflated.next());
        if (next.done) return;
        yield next.value;
      }
    }
    let msg: WriteMessage = first;
    let finished: CatalogObject | undefined;
    let wire = first.write_offset; // the client's next write_offset
    let position = first.write_offset; // the blob's next byte; below receivedSize only while re-sending held bytes
    try {
      for (;;) {
        if (msg !== first) {
          if (finished) throw new InvalidArgumentError('WriteRequest after finish_write=true');
          if (msg.resource_name && msg.resource_name !== first.resource_name) {
            throw new InvalidArgumentError('resource_name changed within the Write stream');
          }
          if (msg.write_offset !== wire) throw new InvalidArgumentError(`write_offset ${msg.write_offset} is not the next byte (${wire})`);
        }
        wire += msg.data.length;
        for (const piece of pieces(msg.data)) {
          if (declaredSize !== undefined && position + piece.length > declaredSize) {
            throw new ContentRefused(`more data than the ${declaredSize} bytes the resource name declares`);
          }
          // read before write(): it takes the buffer, whose memory may move to the hashing thread
          const length = piece.length;
          const held = writer.receivedSize - position; // bytes of this piece Ferry already has
          if (held < length) await writer.write(held > 0 ? piece.subarray(held) : piece);
          position += length;
        }
        if (msg.finish_write) {
          if (inflater) refusing(() => inflater.end());
          if (position < writer.receivedSize) {
            throw new InvalidArgumentError(`finish_write at offset ${position}, before the ${writer.receivedSize} bytes already committed`);
          }
          finished = await writer.finish(this.expectation(target), (size, digests) => this.describe(target, principal, size, digests));
        }
        const next = await rest.next();
        if (next.done) break;
        msg = next.value;
      }
    } catch (err) {
      // content that can never match its name (too long, or a bad zstd stream): keep nothing
      if (!(err instanceof ContentRefused)) throw err;
      await writer.abandon();
      throw new InvalidArgumentError(err.message);
    }
    if (finished) return inflater ? wire : finished.size;
    return writer.flush();
  }

  /**
   * A Write to a finished generic name at offset == its size: nothing more can be written; a
   * finish (with no data) is an idempotent success.
   */
  private async drainFinished(existing: CatalogObject, first: WriteMessage, rest: AsyncIterator<WriteMessage>): Promise<number> {
    for (let msg: WriteMessage | undefined = first; msg;) {
      if (msg.data.length > 0) throw new OutOfRangeError(`${existing.name} is complete; no data may follow its ${existing.size} bytes`);
      const next = await rest.next();
      msg = next.done ? undefined : next.value;
    }
    return existing.size;
  }

  /** A Write starts at the committed size; a REAPI upload may also re-send from any earlier offset. */
  private offsetAccepted(target: ResourceName, offset: number, committed: number): boolean {
    return offset === committed || (target.kind === 'cas-upload' && offset >= 0 && offset < committed);
  }

  private expectation(target: ResourceName): Expectation {
    return target.kind === 'cas-upload' ? { size: target.size, sha256: target.sha256 } : {};
  }

  private describe(target: ResourceName, principal: Principal, size: number, digests: Digests): CatalogObject {
    if (target.kind !== 'generic') return casCatalogObject(digests, size, principal.clientId, target.instance, 'bytestream-cas');
    return {
      name: target.name,
      size,
      ...digests,
      contentType: 'application/octet-stream',
      owner: principal.clientId,
      project: '',
      createdAt: new Date().toISOString(),
      expires: null,
      protocol: 'bytestream',
      blob: digests.sha256,
    };
  }

  async read(principal: Principal, req: { resource_name: string; read_offset: number; read_limit: number }): Promise<ReadResult> {
    const target = this.parse(req.resource_name);
    this.auth.require(principal, Scopes.read(target.name));
    if (req.read_offset < 0) throw new OutOfRangeError(`read_offset ${req.read_offset} is negative`);
    if (req.read_limit < 0) throw new InvalidArgumentError(`read_limit ${req.read_limit} is negative`);
    const compressed = target.kind === 'cas-download' && target.compressor;
    if (compressed && req.read_limit !== 0) throw new InvalidArgumentError('read_limit must be 0 for a compressed-blobs name');
    const { sha256, size } = await this.locate(target, req.resource_name);
    if (req.read_offset > size) throw new OutOfRangeError(`read_offset ${req.read_offset} is past the end (${size} bytes)`);
    const end = req.read_limit > 0 ? Math.min(size, req.read_offset + req.read_limit) : size;
    if (compressed) {
      // (half a chunk in: zstd may grow incompressible bytes a little)
      const plain = this.engine.readBlob(sha256, req.read_offset, end, READ_CHUNK_BYTES / 2);
      const zstd = zstdCompressor();
      pipeline(plain, zstd).catch(() => undefined); // an error reaches the reader through `zstd`
      return { stream: notFoundAs(zstd, req.resource_name), length: end - req.read_offset };
    }
    const stream = this.engine.readBlob(sha256, req.read_offset, end, READ_CHUNK_BYTES);
    return { stream: notFoundAs(stream, req.resource_name), length: end - req.read_offset };
  }

  /** The blob `target` reads; NOT_FOUND names `resourceName`, as the client sent it. */
  private async locate(target: ResourceName, resourceName: string): Promise<{ sha256: string; size: number }> {
    if (target.kind === 'cas-upload') throw new InvalidArgumentError('cannot read an upload name; read {instance}/blobs/{hash}/{size}');
    if (target.kind === 'cas-download') {
      if (target.sha256 === SHA256_EMPTY && target.size === 0) return { sha256: SHA256_EMPTY, size: 0 };
      if (!(await this.engine.hasBlob(target.sha256, target.size))) throw new NotFoundError(`${resourceName} not found`);
      await this.options.cache?.index.touchBlobs([{ sha256: target.sha256, size: target.size }]);
      return { sha256: target.sha256, size: target.size };
    }
    const object = await this.engine.object(target.name);
    if (!object) throw new NotFoundError(`${resourceName} not found`);
    return { sha256: object.blob, size: object.size };
  }

  /** `client`: the tool calling, as it names itself (it matters for REAPI uploads: see the class comment). */
  async queryWriteStatus(principal: Principal, resourceName: string, client?: ClientTool): Promise<WriteStatus> {
    const target = this.parse(resourceName);
    this.auth.require(principal, Scopes.write(target.name));
    if (target.kind === 'cas-download') throw new InvalidArgumentError('QueryWriteStatus takes an upload name');
    // The session before the published content: a publication finishes by publishing, then dropping
    // the session, so whichever of the two is looked at second still sees the upload if the first
    // missed it (the other order answered 0 in the middle of a publication, after the full size).
    const upload = await this.engine.getSession(ByteStreamService.uploadId(resourceName));
    if (target.kind === 'cas-upload') {
      if (await this.engine.hasBlob(target.sha256, target.size)) return { committed_size: target.size, complete: true };
      // An unknown REAPI upload is {0, false}, not NOT_FOUND. Old Bazel is told 0 until the blob is
      // complete (see the class comment): it re-sends from 0, and the bytes Ferry holds are skipped.
      if (answersZero(this.options.zeroResume ?? 'auto', client)) return { committed_size: 0, complete: false };
      return { committed_size: upload?.committed ?? 0, complete: false };
    }
    // A finished name stays complete, even while a client writes it again (to verify identical
    // content): the committed size a client sees never goes down.
    const object = await this.engine.object(target.name);
    if (object) return { committed_size: object.size, complete: true };
    if (upload) return { committed_size: upload.committed, complete: false };
    throw new NotFoundError(`${resourceName} not found`);
  }
}

/** Content that can never match its name: the upload is dropped (INVALID_ARGUMENT). */
class ContentRefused extends Error {}

/** `decode`'s result, its refusal of the data (a bad zstd stream) as ContentRefused. */
function refusing<T>(decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new ContentRefused(err.message);
    throw err;
  }
}

/** A Write that resumes an upload Ferry does not hold: the client must start it again from 0. */
function unknownUpload(resourceName: string, cause?: unknown): NotFoundError {
  return new NotFoundError(`upload ${resourceName} not found: it is unknown or has expired; start it again at write_offset 0`, {
    cause,
  });
}

/**
 * `stream`, its NOT_FOUND (the blob went away under the read: storage names it by its key) naming
 * the client's resource name instead.
 */
function notFoundAs(stream: Readable, resourceName: string): Readable {
  return Readable.from(
    (async function* () {
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } catch (err) {
        if (err instanceof NotFoundError) throw new NotFoundError(`${resourceName} not found`, { cause: err });
        throw err;
      }
    })(),
  );
}

function offsetMismatch(offset: number, committed: number): InvalidArgumentError {
  return new InvalidArgumentError(
    `write_offset ${offset} does not match the committed size ${committed}; call QueryWriteStatus and resume from there`,
  );
}

/** The catalog object of a CAS blob (`blobs/{sha256}/{size}`), whichever REAPI call stored it. */
export function casCatalogObject(digests: Digests, size: number, owner: string, instance: string, protocol: string): CatalogObject {
  return {
    name: casObjectName(digests.sha256, size),
    size,
    ...digests,
    contentType: 'application/octet-stream',
    owner,
    project: instance,
    createdAt: new Date().toISOString(),
    expires: null,
    protocol,
    blob: digests.sha256,
  };
}
