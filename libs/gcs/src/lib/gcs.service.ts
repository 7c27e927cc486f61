import { randomBytes } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import { Authenticator, Principal, Scopes } from '@ferry/auth';
import type { CatalogObject } from '@ferry/catalog';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, OutOfRangeError, UnimplementedError } from '@ferry/errors';
import type {
  CommonObjectRequestParams__Output,
  DeleteObjectRequest,
  GcsObject,
  GetObjectRequest,
  ObjectChecksums__Output,
  ReadObjectRequest__Output,
  ReadObjectResponse,
  StartResumableWriteRequest__Output,
  WriteObjectSpec__Output,
} from '@ferry/protocol';
import type { UploadSession } from '@ferry/sessions';
import { uploadMetrics } from '@ferry/uploads';
import type { DigestNeeds, Digests, UploadEngine, UploadWriter } from '@ferry/uploads';
import {
  DeclaredChecksums,
  GcsNames,
  GcsNamesOptions,
  GcsWriteSpec,
  checkPreconditions,
  crc32cHexOf,
  gcsCatalogName,
  generationOf,
  mergeChecksums,
  objectChecksums,
  parseChecksums,
  parseWriteSpec,
  toGcsObject,
} from './gcs-model';

/** One WriteObjectRequest or BidiWriteObjectRequest, as decoded. */
export interface GcsWriteMessage {
  upload_id?: string;
  write_object_spec?: WriteObjectSpec__Output | null;
  append_object_spec?: unknown;
  first_message?: string;
  write_offset: number;
  checksummed_data?: { content: Buffer; crc32c?: number } | null;
  object_checksums: ObjectChecksums__Output | null;
  finish_write: boolean;
  /** BidiWriteObject only. */
  flush?: boolean;
  /** BidiWriteObject only. */
  state_lookup?: boolean;
  common_object_request_params?: CommonObjectRequestParams__Output | null;
}

export type GcsWriteStatus = { persisted_size: number } | { resource: GcsObject };

/** What BidiWriteObject answers while the stream is open. */
export interface BidiReplies {
  /** A `state_lookup` (after a `flush`, the size covers the flushed message). */
  persisted(size: number): Promise<void>;
  /** The upload is published: answered at once, before the stream's end is checked. */
  finished(resource: GcsObject): Promise<void>;
}

export interface GcsReadResult {
  /** The responses in order: the first carries metadata, checksums and (if asked) the content range. */
  responses: AsyncIterable<ReadObjectResponse>;
}

export interface GcsServiceOptions extends GcsNamesOptions {
  /** How long a finished upload id still answers QueryWriteStatus with its object. */
  finishedRetentionMs: number;
}

export const READ_CHUNK_BYTES = 2 * 1024 * 1024;
/** The fields of ReadObject, GetObject and DeleteObject that select the live object. */
type ObjectSelector = Pick<
  GetObjectRequest,
  'generation' | 'if_generation_match' | 'if_generation_not_match' | 'if_metageneration_match' | 'if_metageneration_not_match'
>;

const UPLOAD_ID = /^gcs_[A-Za-z0-9_-]{32}$/;
const PROTOCOL = 'gcs';

interface FinishedRecord {
  name: string;
  generation: number;
}

/**
 * google.storage.v2.Storage (resumable writes, reads, object get/delete) over the shared upload
 * engine, independent of the transport. The upload engine does what ByteStream relies on too:
 * sessions and leases in Redis, bytes to staging with fsync batches, digests on the way,
 * verified atomic publication. This face adds the v2 rules: upload ids, write specs with
 * preconditions, per-message crc32c, overlapping offsets, object_size, whole-object checksums,
 * generations, and the `Object` resource.
 */
export class GcsService {
  private readonly names: GcsNames;

  constructor(
    private readonly engine: UploadEngine,
    private readonly auth: Authenticator,
    private readonly options: GcsServiceOptions,
  ) {
    this.names = new GcsNames(options);
  }

  async startResumableWrite(principal: Principal, req: StartResumableWriteRequest__Output): Promise<{ upload_id: string }> {
    if (!req.write_object_spec) throw new InvalidArgumentError('write_object_spec is required');
    rejectEncryption(req.common_object_request_params);
    const spec = parseWriteSpec(req.write_object_spec, req.object_checksums, this.names);
    const name = gcsCatalogName(spec.bucket, spec.object);
    this.auth.require(principal, Scopes.write(name));
    checkPreconditions(spec, await this.engine.object(name));
    return { upload_id: await this.newUpload(principal, name, spec) };
  }

  /**
   * WriteObject and BidiWriteObject. Returns the final status: the object once `finish_write`
   * published it, else the persisted size (a resumable upload left for later). `replies` answers
   * a bidi stream's `state_lookup`s and its finish as they happen.
   */
  async write(principal: Principal, messages: AsyncIterable<GcsWriteMessage>, replies?: BidiReplies): Promise<GcsWriteStatus> {
    const it = messages[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) throw new InvalidArgumentError('empty write stream: the first message must carry upload_id or write_object_spec');
    const msg = first.value;
    if (msg.append_object_spec) throw new UnimplementedError('appendable objects are not supported');
    rejectEncryption(msg.common_object_request_params);
    if (msg.write_offset < 0) throw new InvalidArgumentError(`write_offset ${msg.write_offset} is negative`);
    if (msg.upload_id) return this.resume(principal, msg, it, replies);
    if (msg.write_object_spec) return this.writeSingle(principal, msg, msg.write_object_spec, it, replies);
    throw new InvalidArgumentError('the first message must carry upload_id or write_object_spec');
  }

  /** A resumable write: continues the upload `upload_id` from its persisted size. */
  private async resume(
    principal: Principal,
    first: GcsWriteMessage,
    rest: AsyncIterator<GcsWriteMessage>,
    replies: BidiReplies | undefined,
  ): Promise<GcsWriteStatus> {
    const session = await this.session(first.upload_id as string);
    const spec = specOf(session);
    this.auth.require(principal, Scopes.write(session.name));
    // A client whose finish response was lost writes again: it gets the object.
    if (session.state === 'finished') return this.answerFinished(session, replies);
    const declared = mergeChecksums(spec.checksums, parseChecksums(first.object_checksums));
    // Below the persisted size is fine (those bytes are skipped); past it, bytes would be missing.
    if (first.write_offset > session.committed) throw offsetMismatch(first.write_offset, session.committed);
    let writer: UploadWriter;
    try {
      writer = await this.engine.openWriter(session.id, digestNeeds(declared));
    } catch (err) {
      // finished by another stream between the two reads
      if (err instanceof FailedPreconditionError) return this.answerFinished(await this.session(session.id), replies);
      throw err;
    }
    try {
      return await this.stream(principal, spec, declared, first, rest, writer, { single: false, replies });
    } finally {
      await writer.close();
    }
  }

  /** A single-stream write: the spec in the first message, `finish_write` required, nothing resumable. */
  private async writeSingle(
    principal: Principal,
    first: GcsWriteMessage,
    specMessage: WriteObjectSpec__Output,
    rest: AsyncIterator<GcsWriteMessage>,
    replies: BidiReplies | undefined,
  ): Promise<GcsWriteStatus> {
    const spec = parseWriteSpec(specMessage, first.object_checksums, this.names);
    const name = gcsCatalogName(spec.bucket, spec.object);
    this.auth.require(principal, Scopes.write(name));
    if (first.write_offset !== 0) throw new InvalidArgumentError(`a new write starts at offset 0, not ${first.write_offset}`);
    checkPreconditions(spec, await this.engine.object(name));
    if (first.finish_write) {
      // The whole object is this message: no session, no staging.
      await endOfStream(rest);
      const data = checkedContent(first) ?? Buffer.alloc(0);
      if (spec.objectSize !== undefined && data.length !== spec.objectSize) throw sizeMismatch(spec.objectSize, data.length);
      const described = this.describer(principal, spec);
      const published = await this.engine.publishWhole(data, expectation(spec.checksums), described.describe, digestNeeds(spec.checksums));
      const resource = this.published(spec, published, described);
      await replies?.finished(resource);
      return { resource };
    }
    const id = await this.newUpload(principal, name, spec);
    const writer = await this.engine.openWriter(id, digestNeeds(spec.checksums));
    try {
      return await this.stream(principal, spec, spec.checksums, first, rest, writer, { single: true, replies });
    } catch (err) {
      await writer.abandon(); // nobody can resume a single-stream write: keep nothing
      throw err;
    } finally {
      await writer.close();
    }
  }

  private async stream(
    principal: Principal,
    spec: GcsWriteSpec,
    declaredAtStart: DeclaredChecksums,
    first: GcsWriteMessage,
    rest: AsyncIterator<GcsWriteMessage>,
    writer: UploadWriter,
    mode: { single: boolean; replies?: BidiReplies },
  ): Promise<GcsWriteStatus> {
    // Checked again under the lease: another writer may have moved the upload in between.
    if (first.write_offset > writer.committedSize) throw offsetMismatch(first.write_offset, writer.committedSize);
    let declared = declaredAtStart;
    for (let msg = first; ;) {
      if (msg !== first) {
        if (msg.first_message) throw new InvalidArgumentError(`${msg.first_message} is only allowed on the first message of a stream`);
        if (msg.object_checksums && !msg.finish_write) {
          throw new InvalidArgumentError('object_checksums may only be sent on the first message or with finish_write');
        }
        if (msg.write_offset > writer.receivedSize) {
          throw new InvalidArgumentError(
            `write_offset ${msg.write_offset} is past the ${writer.receivedSize} bytes sent; call QueryWriteStatus and resume from there`,
          );
        }
        if (msg.write_offset < 0) throw new InvalidArgumentError(`write_offset ${msg.write_offset} is negative`);
      }
      // read before the content goes to the writer, which may take the memory of the whole message
      const finishChecksums = msg.finish_write ? parseChecksums(msg.object_checksums) : undefined;
      const data = checkedContent(msg);
      if (data) {
        // Bytes before receivedSize were sent already: skip the overlap.
        const skip = writer.receivedSize - msg.write_offset;
        if (skip < data.length) {
          const fresh = skip > 0 ? data.subarray(skip) : data;
          if (spec.objectSize !== undefined && writer.receivedSize + fresh.length > spec.objectSize) {
            await writer.abandon(); // GCS: start over with the right byte count
            throw sizeMismatch(spec.objectSize, writer.receivedSize + fresh.length, 'at least ');
          }
          await writer.write(fresh);
        }
      }
      if (finishChecksums) {
        declared = mergeChecksums(declared, finishChecksums);
        // The stream must end here, and is seen to end before anything is published. Clients
        // half-close after finish_write on BidiWriteObject too (as Google's own test server
        // requires: it reads the whole request stream before it finalizes).
        await endOfStream(rest);
        const resource = await this.finish(principal, spec, declared, writer);
        await mode.replies?.finished(resource);
        return { resource };
      }
      if (mode.replies && (msg.flush || msg.state_lookup)) {
        const persisted = msg.flush ? await writer.flush() : writer.committedSize;
        if (msg.state_lookup) await mode.replies.persisted(persisted);
      }
      const next = await rest.next();
      if (next.done) break;
      msg = next.value;
    }
    if (mode.single) throw new InvalidArgumentError('a write without upload_id must end with finish_write; nothing was stored');
    const persisted = await writer.flush();
    await mode.replies?.persisted(persisted);
    return { persisted_size: persisted };
  }

  private async finish(principal: Principal, spec: GcsWriteSpec, declared: DeclaredChecksums, writer: UploadWriter): Promise<GcsObject> {
    const size = writer.receivedSize;
    if (spec.objectSize !== undefined && size !== spec.objectSize && !writer.publishing) {
      await writer.abandon();
      throw sizeMismatch(spec.objectSize, size);
    }
    const name = gcsCatalogName(spec.bucket, spec.object);
    checkPreconditions(spec, await this.engine.object(name));
    const described = this.describer(principal, spec);
    const published = await writer.finish(expectation(declared), described.describe, (object) => ({
      result: JSON.stringify({ name, generation: generationOf(object) } satisfies FinishedRecord),
      retainMs: this.options.finishedRetentionMs,
    }));
    return this.published(spec, published, described);
  }

  /**
   * The resource of a publication. When the name already held identical content, the publication
   * answered that object (immutability): its generation must still satisfy the preconditions.
   */
  private published(spec: GcsWriteSpec, object: CatalogObject, described: Describer): GcsObject {
    if (object.createdAt !== described.createdAt) checkPreconditions(spec, object);
    return toGcsObject(object, spec.bucket, spec.object);
  }

  /**
   * The catalog object an upload publishes. Its generation (0 here) is assigned by the catalog at
   * publication, increasing per name across replicas; `createdAt` tells it from an existing object.
   */
  private describer(principal: Principal, spec: GcsWriteSpec): Describer {
    const createdAt = new Date().toISOString();
    return {
      createdAt,
      describe: (size, digests) => ({
        name: gcsCatalogName(spec.bucket, spec.object),
        size,
        ...digests,
        contentType: spec.contentType,
        owner: principal.clientId,
        project: spec.bucket,
        createdAt,
        expires: null,
        protocol: PROTOCOL,
        blob: digests.sha256,
        generation: 0,
        ...(Object.keys(spec.metadata).length > 0 ? { metadata: spec.metadata } : {}),
      }),
    };
  }

  private async answerFinished(session: UploadSession, replies: BidiReplies | undefined): Promise<GcsWriteStatus> {
    const resource = await this.finishedObject(session);
    await replies?.finished(resource);
    return { resource };
  }

  /** A new resumable upload of `name` (its session keeps the spec); its id, which clients resume with. */
  private async newUpload(principal: Principal, name: string, spec: GcsWriteSpec): Promise<string> {
    const id = `gcs_${randomBytes(24).toString('base64url')}`;
    await this.engine.getOrCreateSession({
      id,
      name,
      protocol: PROTOCOL,
      owner: principal.clientId,
      attributes: { spec: JSON.stringify(spec) },
    });
    return id;
  }

  /** The object a finished upload published, while it still lives. */
  private async finishedObject(session: UploadSession): Promise<GcsObject> {
    const record = JSON.parse(session.result ?? '{}') as Partial<FinishedRecord>;
    const object = record.name ? await this.engine.object(record.name) : undefined;
    if (!object || generationOf(object) !== record.generation) {
      throw new NotFoundError(`upload ${session.id} finished, but its object was deleted since`);
    }
    const spec = specOf(session);
    return toGcsObject(object, spec.bucket, spec.object);
  }

  async queryWriteStatus(principal: Principal, uploadId: string): Promise<GcsWriteStatus> {
    const session = await this.session(uploadId);
    this.auth.require(principal, Scopes.write(session.name));
    if (session.state === 'finished') return { resource: await this.finishedObject(session) };
    return { persisted_size: session.committed };
  }

  /** Drops an unfinished upload and its staged bytes; later calls with its id get NOT_FOUND. */
  async cancelResumableWrite(principal: Principal, uploadId: string): Promise<void> {
    const session = await this.session(uploadId);
    this.auth.require(principal, Scopes.write(session.name));
    if (session.state === 'finished') throw new FailedPreconditionError(`upload ${uploadId} is finished; delete the object instead`);
    await this.engine.discard(session.id);
  }

  /** The live object under `name`, checked against the request's generation and preconditions. */
  private async live(name: string, req: ObjectSelector): Promise<CatalogObject> {
    const object = await this.engine.object(name);
    if (!object || (req.generation && generationOf(object) !== req.generation)) {
      throw new NotFoundError(`${name}${req.generation ? ` generation ${req.generation}` : ''} not found`);
    }
    checkPreconditions(
      {
        ifGenerationMatch: req.if_generation_match,
        ifGenerationNotMatch: req.if_generation_not_match,
        ifMetagenerationMatch: req.if_metageneration_match,
        ifMetagenerationNotMatch: req.if_metageneration_not_match,
      },
      object,
    );
    return object;
  }

  async getObject(principal: Principal, req: GetObjectRequest): Promise<GcsObject> {
    rejectEncryption(req.common_object_request_params);
    const bucket = this.names.bucket(req.bucket);
    const objectName = this.names.object(req.object);
    const name = gcsCatalogName(bucket, objectName);
    this.auth.require(principal, Scopes.read(name));
    return toGcsObject(await this.live(name, req), bucket, objectName);
  }

  /**
   * Deletes the live object (never one published again under the name meanwhile), if this face
   * published it: the catalog is shared, and other protocols promise their objects live on (a
   * Taskcluster object until it expires, a file handle, a CAS blob). Checked and deleted in one step.
   */
  async deleteObject(principal: Principal, req: DeleteObjectRequest): Promise<void> {
    const bucket = this.names.bucket(req.bucket);
    const name = gcsCatalogName(bucket, this.names.object(req.object));
    this.auth.require(principal, Scopes.write(name));
    const object = await this.live(name, req);
    const outcome = await this.engine.deleteOwn(name, object.createdAt, PROTOCOL);
    if (outcome.deleted) return;
    if (outcome.ownedBy !== undefined) {
      throw new FailedPreconditionError(
        `${name} was published by ${publisherOf(outcome.ownedBy)}, which keeps it; only objects written through the Cloud Storage API can be deleted here`,
      );
    }
    throw new NotFoundError(`${name} changed while being deleted; look again`);
  }

  async readObject(principal: Principal, req: ReadObjectRequest__Output): Promise<GcsReadResult> {
    rejectEncryption(req.common_object_request_params);
    const bucket = this.names.bucket(req.bucket);
    const objectName = this.names.object(req.object);
    const name = gcsCatalogName(bucket, objectName);
    this.auth.require(principal, Scopes.read(name));
    if (req.read_limit < 0) throw new InvalidArgumentError(`read_limit ${req.read_limit} is negative`);
    const object = await this.live(name, req);
    const size = object.size;
    if (req.read_offset > size) throw new OutOfRangeError(`read_offset ${req.read_offset} is past the end of the object (${size} bytes)`);
    const start = req.read_offset < 0 ? Math.max(0, size + req.read_offset) : req.read_offset;
    const end = req.read_limit > 0 ? Math.min(size, start + req.read_limit) : size;
    const head: ReadObjectResponse = {
      metadata: toGcsObject(object, bucket, objectName),
      object_checksums: objectChecksums(object),
      ...(req.read_offset !== 0 || req.read_limit !== 0 ? { content_range: { start, end, complete_length: size } } : {}),
    };
    return { responses: this.readResponses(object, start, end, head) };
  }

  private async *readResponses(
    object: CatalogObject,
    start: number,
    end: number,
    head: ReadObjectResponse,
  ): AsyncIterable<ReadObjectResponse> {
    if (end <= start) {
      yield head;
      return;
    }
    let first = true;
    const sent = uploadMetrics.bytesSent.labels({ protocol: PROTOCOL });
    for await (const chunk of this.engine.readBlob(object.blob, start, end, READ_CHUNK_BYTES)) {
      const content = chunk as Buffer;
      sent.inc(content.length);
      const data = { checksummed_data: { content, crc32c: crc32c(content) } };
      yield first ? { ...head, ...data } : data;
      first = false;
    }
  }

  /** A GCS upload's session; NOT_FOUND for ids that are malformed, unknown, cancelled or of another protocol. */
  private async session(uploadId: string): Promise<UploadSession> {
    const session = UPLOAD_ID.test(uploadId) ? await this.engine.getSession(uploadId) : undefined;
    if (!session || session.protocol !== PROTOCOL) throw new NotFoundError(`upload ${uploadId} not found`);
    return session;
  }
}

/** The catalog object an upload will publish, and when it was described. */
interface Describer {
  createdAt: string;
  describe: (size: number, digests: Digests) => CatalogObject;
}

const PUBLISHERS: Record<string, string> = {
  object: 'the Taskcluster object API (protocol object)',
  multipart: 'the multipart API (protocol multipart, a file handle)',
  bytestream: 'ByteStream (protocol bytestream)',
  'bytestream-cas': 'the Remote Execution API CAS (protocol bytestream-cas)',
  'reapi-cas': 'the Remote Execution API CAS (protocol reapi-cas)',
};

function publisherOf(protocol: string): string {
  return PUBLISHERS[protocol] ?? `protocol ${protocol || 'unknown'}`;
}

/** Waits for the client to end its stream; a message after finish_write is an error (nothing is published). */
async function endOfStream(rest: AsyncIterator<GcsWriteMessage>): Promise<void> {
  if (!(await rest.next()).done) throw new InvalidArgumentError('message after finish_write; nothing was published');
}

function specOf(session: UploadSession): GcsWriteSpec {
  return JSON.parse(session.attributes['spec']) as GcsWriteSpec;
}

/** A message's data after checking its crc32c (INVALID_ARGUMENT on a mismatch); undefined when empty. */
function checkedContent(msg: GcsWriteMessage): Buffer | undefined {
  const data = msg.checksummed_data;
  if (!data || data.content.length === 0) return undefined;
  if (data.crc32c !== undefined && data.crc32c !== null) {
    const actual = crc32c(data.content);
    if (actual >>> 0 !== data.crc32c >>> 0) {
      throw new InvalidArgumentError(
        `crc32c mismatch in the data at write_offset ${msg.write_offset}: declared ${crc32cHexOf(data.crc32c)}, computed ${crc32cHexOf(actual)}`,
      );
    }
  }
  return data.content;
}

/**
 * Digests by need: every object this face writes carries a crc32c (GCS clients check it on
 * download), an md5 when the client declared one; sha256 always (the engine's content address).
 * An md5 declared only with finish_write is computed then, by the engine.
 */
function digestNeeds(declared: DeclaredChecksums): DigestNeeds {
  return declared.md5 ? ['crc32c', 'md5'] : ['crc32c'];
}

function expectation(declared: DeclaredChecksums) {
  return { ...declared, declaredBy: 'object_checksums' };
}

function rejectEncryption(params: CommonObjectRequestParams__Output | null | undefined): void {
  if (params?.encryption_algorithm) throw new UnimplementedError('customer-supplied encryption keys are not supported');
}

function offsetMismatch(offset: number, persisted: number): InvalidArgumentError {
  return new InvalidArgumentError(
    `write_offset ${offset} does not match the persisted size ${persisted}; call QueryWriteStatus and resume from there`,
  );
}

function sizeMismatch(declared: number, actual: number, qualifier = ''): OutOfRangeError {
  return new OutOfRangeError(`object_size declares ${declared} bytes, the upload has ${qualifier}${actual}; start the upload over`);
}
