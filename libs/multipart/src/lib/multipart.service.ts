import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Authenticator, Principal, SignedRequest, Scopes, UrlSigner, satisfiesScope } from '@ferry/auth';
import type { CatalogObject } from '@ferry/catalog';
import {
  CancelledError,
  ConcurrentWriterError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from '@ferry/errors';
import type { AssembleMultipartResult } from '@ferry/jobs';
import type { StagingFile, Storage } from '@ferry/storage';
import { BatchedWriter, LeaseKeeper, resumableHashing } from '@ferry/uploads';
import type { MultipartAssembler } from './assembler';
import type { AssemblyQueue } from './assembly-queue';
import type { DigestProgress } from './digest-progress';
import { FileHandles } from './file-handles';
import {
  AddPartResponse,
  FileHandle,
  MultipartUploadRequest,
  MultipartUploadStatus,
  PartPresignedUrl,
  parseMd5Hex,
  parsePartNumber,
  parseUploadRequest,
  parseUrlBatch,
  partRange,
  requestDigest,
} from './model';
import { MultipartStore, MultipartUpload, PartLease, toStatus } from './multipart-store';

export interface MultipartOptions {
  urlTtlMs: number;
  completeWaitMs: number;
  maxUrlBatch: number;
  /**
   * `complete` assembles the upload in this process when at most this many bytes are left to hash
   * (usually the last parts in flight); more, and the worker's job does it (0: always the job).
   */
  inlineCompleteBytes: number;
}

/** What multipart-api needs to advance digests as parts land and to assemble uploads itself. */
export interface LocalAssembly {
  progress: DigestProgress;
  assembler: MultipartAssembler;
  /** An assembly run here failed (the worker's job takes over). */
  onError?: (err: unknown, uploadId: string) => void;
  /** An assembly run here settled the upload, in `ms`. */
  onSettled?: (uploadId: string, result: AssembleMultipartResult, ms: number) => void;
}

/**
 * A crash of the process assembling an upload in `complete` leaves it ASSEMBLING: the job enqueued
 * first then runs after this long (plus FERRY_MULTIPART_COMPLETE_WAIT_MS), unless the client's
 * next complete finishes it first.
 */
const LOCAL_ASSEMBLY_GRACE_MS = 5_000;

/** Paths of the data plane (signed URLs), shared by the signer and the HTTP routes. */
export const DataPaths = {
  part: (uploadId: string, partNumber: number) => `/file/multipart/${uploadId}/parts/${partNumber}`,
  content: (fileHandleId: string) => `/file/fileHandle/${fileHandleId}/content`,
};

/** Scope a client needs to upload files through the multipart API. */
export const MULTIPART_UPLOAD_SCOPE = Scopes.write('fileHandle/*');

/**
 * The multipart upload protocol (docs/protocols.md, Synapse multipart upload), transport-free: the HTTP app parses
 * requests and maps the typed errors thrown here to statuses.
 */
export class MultipartService {
  constructor(
    private readonly store: MultipartStore,
    private readonly handles: FileHandles,
    private readonly storage: Storage,
    private readonly queue: AssemblyQueue,
    private readonly auth: Authenticator,
    private readonly signer: UrlSigner,
    private readonly options: MultipartOptions,
    private readonly local?: LocalAssembly,
  ) {}

  // --- control plane (bearer-authenticated) ----------------------------------------------------

  /**
   * Start or resume. The same user sending the same request gets the same upload (and its missing
   * parts); a file this user already uploaded (same MD5 and size) is answered COMPLETED at once
   * with a new handle sharing the content; forceRestart abandons the previous upload and skips dedup.
   */
  async start(principal: Principal, body: unknown, forceRestart: boolean): Promise<MultipartUploadStatus> {
    this.auth.require(principal, MULTIPART_UPLOAD_SCOPE);
    const request = parseUploadRequest(body);
    const owner = principal.clientId;
    const requestKey = requestDigest(request);
    for (let attempt = 0; attempt < 5; attempt++) {
      const previousId = (await this.store.uploadForRequest(owner, requestKey)) ?? '';
      const previous = previousId ? await this.store.get(previousId) : undefined;
      if (previous && !forceRestart && previous.state !== 'FAILED') {
        // A start that died before or in its dedup (after its upload became the request's): finish
        // it, with the handle id it chose if it chose one, as long as nothing was added to it yet.
        if (previous.state === 'UPLOADING' && (previous.dedupHandleId || !previous.partsState.includes('1'))) {
          await this.dedup(previous.id, owner, previous.request);
        }
        return toStatus((await this.touch(previous)) ?? previous);
      }
      const id = MultipartStore.newUploadId();
      await this.store.create(id, owner, requestKey, request);
      const swapped = await this.store.swapRequest(owner, requestKey, previousId, id);
      if (!swapped.ok) {
        // a concurrent start of the same request won: answer with its upload
        await this.store.delete(id);
        continue;
      }
      if (previous && previous.state === 'UPLOADING') await this.abandon(previous);
      if (!forceRestart) await this.dedup(id, owner, request);
      return this.statusOf(id);
    }
    throw new ConcurrentWriterError('too many concurrent starts of this upload; retry');
  }

  async status(principal: Principal, uploadId: string): Promise<MultipartUploadStatus> {
    return toStatus(await this.owned(principal, uploadId));
  }

  async presignedUrls(
    principal: Principal,
    uploadId: string,
    body: unknown,
    baseUrl: string,
  ): Promise<{ partPresignedUrls: PartPresignedUrl[] }> {
    const upload = await this.owned(principal, uploadId);
    const { partNumbers, contentType } = parseUrlBatch(body, uploadId, upload.parts, this.options.maxUrlBatch);
    // (on S3 a URL reaches the bucket for its whole lifetime, whatever happens to the upload)
    if (upload.state !== 'UPLOADING') throw new FailedPreconditionError(`upload ${uploadId} is ${upload.state}: it takes no more parts`);
    const direct = this.storage.direct;
    if (direct) {
      // S3: each part goes straight to the bucket, as an object of its own
      const expiresInSeconds = Math.floor(this.options.urlTtlMs / 1000);
      return {
        partPresignedUrls: await Promise.all(
          partNumbers.map(async (partNumber) => {
            const { start, end } = partRange(partNumber, upload.request.fileSizeBytes, upload.request.partSizeBytes);
            const { url, headers } = await direct.stagingPartPutUrl(uploadId, partNumber - 1, {
              contentLength: end - start,
              contentType,
              expiresInSeconds,
            });
            return { partNumber, uploadPresignedUrl: url, signedHeaders: headers };
          }),
        ),
      };
    }
    const expiresAt = Math.floor((Date.now() + this.options.urlTtlMs) / 1000);
    const signedHeaders: Record<string, string> = contentType ? { 'Content-Type': contentType } : {};
    return {
      partPresignedUrls: partNumbers.map((partNumber) => {
        const path = DataPaths.part(uploadId, partNumber);
        const query = this.signer.sign({ method: 'PUT', path, expiresAt, headers: signedHeaders });
        return { partNumber, uploadPresignedUrl: `${baseUrl}${path}?${query}`, signedHeaders };
      }),
    };
  }

  async addPart(principal: Principal, uploadId: string, partNumberRaw: string, md5Raw: unknown): Promise<AddPartResponse> {
    const upload = await this.owned(principal, uploadId);
    const partNumber = parsePartNumber(partNumberRaw, upload.parts);
    const md5 = parseMd5Hex(md5Raw, 'partMD5Hex');
    let observed = '';
    if (this.storage.direct && upload.state === 'UPLOADING') {
      // the part went straight to the bucket: what the store holds is the truth
      const part = await this.storage.direct.stagingPart(uploadId, partNumber - 1);
      const { start, end } = partRange(partNumber, upload.request.fileSizeBytes, upload.request.partSizeBytes);
      const fail = (errorMessage: string): AddPartResponse => ({ uploadId, partNumber, addPartState: 'ADD_FAILED', errorMessage });
      if (!part) return fail(`no bytes are stored for part ${partNumber}: PUT them to a presigned URL first`);
      if (part.size !== end - start)
        return fail(`part ${partNumber} is exactly ${end - start} bytes; the stored one has ${part.size}; PUT the part again`);
      observed = part.md5;
    }
    const outcome = await this.store.addPart(uploadId, partNumber, md5, observed);
    // the whole-file digests move on over the parts added so far, after this answer (never before it)
    if (outcome.ok) this.local?.progress.kick(uploadId);
    return outcome.ok
      ? { uploadId, partNumber, addPartState: 'ADD_SUCCESS' }
      : { uploadId, partNumber, addPartState: 'ADD_FAILED', errorMessage: outcome.reason };
  }

  /**
   * Checks every part is added, then assembles the upload: here, when the digests advanced as the
   * parts landed leave at most `inlineCompleteBytes` to hash; else by the worker's job (enqueued
   * once). Waits for the result up to the configured time: `done` is false when the wait ran out
   * (the client calls complete again for the result).
   */
  async complete(principal: Principal, uploadId: string, signal?: AbortSignal): Promise<{ status: MultipartUploadStatus; done: boolean }> {
    await this.owned(principal, uploadId);
    const r = await this.store.complete(uploadId);
    if ('missing' in r) {
      const shown = r.missing.slice(0, 20).join(', ');
      const more = r.missing.length > 20 ? ` and ${r.missing.length - 20} more` : '';
      throw new InvalidArgumentError(`cannot complete: ${r.missing.length} part(s) missing: ${shown}${more}`);
    }
    const deadline = Date.now() + this.options.completeWaitMs;
    if (r.state === 'ASSEMBLING' && !(await this.assembleHere(uploadId, deadline))) await this.queue.ensure(uploadId);
    let pause = 25;
    for (;;) {
      // polled: the state alone, not the partsState string (up to 10,000 characters)
      const state = await this.store.stateOf(uploadId);
      if (state === 'FAILED' || state === 'COMPLETED' || state === undefined || Date.now() >= deadline || signal?.aborted) {
        const upload = await this.store.get(uploadId);
        if (!upload) throw new NotFoundError(`upload ${uploadId} not found`);
        if (upload.state === 'FAILED')
          throw new InvalidArgumentError(`the upload failed: ${upload.failureReason ?? 'unknown reason'}; start it again`);
        if (upload.state === 'COMPLETED') return { status: toStatus(upload), done: true };
        if (Date.now() >= deadline || signal?.aborted) return { status: toStatus(upload), done: false };
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(1, deadline - Date.now()))));
      pause = Math.min(100, pause * 2);
    }
  }

  async fileHandle(principal: Principal, id: string): Promise<FileHandle> {
    const handle = await this.handles.get(id);
    if (!handle) throw new NotFoundError(`file handle ${id} not found`);
    if (handle.createdBy !== principal.clientId && !satisfiesScope(principal.scopes, Scopes.read(handle.objectName))) {
      throw new PermissionDeniedError(`file handle ${id} belongs to another user`);
    }
    return handle;
  }

  /** A signed, short-lived URL of the handle's content. */
  async fileHandleUrl(principal: Principal, id: string, baseUrl: string): Promise<string> {
    const handle = await this.fileHandle(principal, id);
    if (this.storage.direct) {
      const live = await this.handles.liveObject(handle.id);
      if (!live) throw new NotFoundError(`file handle ${id} not found`);
      const expiresInSeconds = Math.floor(this.options.urlTtlMs / 1000);
      return this.storage.direct.blobGetUrl(live.object.blob, {
        expiresInSeconds,
        contentType: handle.contentType,
        fileName: handle.fileName,
      });
    }
    const path = DataPaths.content(handle.id);
    const expiresAt = Math.floor((Date.now() + this.options.urlTtlMs) / 1000);
    return `${baseUrl}${path}?${this.signer.sign({ method: 'GET', path, expiresAt })}`;
  }

  // --- data plane (signed URLs) ----------------------------------------------------------------

  /**
   * Receives part `n` of an upload from a presigned PUT: streams it to its offset in the upload's
   * staging object with backpressure, computing its md5 on the way, makes it durable, then records
   * the md5 (what add-part compares). A part PUT again replaces the previous bytes.
   */
  async putPart(
    uploadId: string,
    partNumberRaw: string,
    signed: SignedRequest,
    body: AsyncIterable<Buffer>,
    declaredLength: number | undefined,
  ): Promise<{ md5: string; size: number }> {
    this.signer.verifyRequest(signed);
    if (this.storage.direct) throw new FailedPreconditionError('parts go straight to the bucket: ask for presigned part URLs again');
    const upload = await this.store.get(uploadId);
    if (!upload) throw new NotFoundError(`upload ${uploadId} not found`);
    const n = parsePartNumber(partNumberRaw, upload.parts);
    const { start, end } = partRange(n, upload.request.fileSizeBytes, upload.request.partSizeBytes);
    const expected = end - start;
    if (declaredLength !== undefined && declaredLength !== expected) {
      throw new InvalidArgumentError(`part ${n} is exactly ${expected} bytes; Content-Length says ${declaredLength}`);
    }
    const takenAt = performance.now();
    const lease = await this.store.beginPart(uploadId, n);
    const writer = new PartWriter(this.store, lease, takenAt);
    try {
      writer.attach(await this.storage.openStagingForParts(uploadId, upload.request.fileSizeBytes, { start, end }), start);
      let received = 0;
      // Iterated by hand: leaving the loop early (a refusal) must not destroy the request, or the
      // refusal could not be sent; the server drops the connection after answering instead.
      const chunks = body[Symbol.asyncIterator]();
      for (;;) {
        const next = await chunks.next();
        if (next.done) break;
        const chunk = next.value;
        received += chunk.length;
        if (received > expected) throw new InvalidArgumentError(`part ${n} is exactly ${expected} bytes; more were sent`);
        await writer.push(chunk);
      }
      if (received !== expected) throw new InvalidArgumentError(`part ${n} is exactly ${expected} bytes; ${received} were sent`);
      const md5 = await writer.finish();
      await this.store.endPart(lease, md5);
      return { md5, size: expected };
    } catch (err) {
      await writer.abort();
      throw isAbort(err) ? new CancelledError('the client closed the request before the part was complete') : err;
    } finally {
      await writer.close();
    }
  }

  /** Opens a file handle's content from a signed GET URL. */
  async openContent(
    id: string,
    signed: SignedRequest,
  ): Promise<{ handle: FileHandle; object: CatalogObject; read(start: number, end: number): Readable }> {
    this.signer.verifyRequest(signed);
    const live = await this.handles.liveObject(id);
    if (!live) throw new NotFoundError(`file handle ${id} not found`);
    return { ...live, read: (start, end) => this.handles.readContent(live.object, start, end) };
  }

  // --- helpers ---------------------------------------------------------------------------------

  /**
   * Assembles a completing upload in this process if little is left to hash; true if it settled
   * it. Its job is enqueued first, delayed, in case this process dies (and dropped once settled).
   */
  private async assembleHere(uploadId: string, deadline: number): Promise<boolean> {
    const local = this.local;
    const upload = local && (await this.store.get(uploadId));
    if (!local || !upload || upload.state !== 'ASSEMBLING') return false;
    const { fileSizeBytes: size, partSizeBytes: partSize } = upload.request;
    const left = size - Math.min(size, upload.digest.parts * partSize);
    const most = this.options.inlineCompleteBytes;
    if (most === 0 || (!upload.digests && left > most)) return false;
    const started = Date.now();
    await this.queue.ensure(uploadId, this.options.completeWaitMs + LOCAL_ASSEMBLY_GRACE_MS);
    try {
      const result = await local.assembler.assemble(uploadId, deadline);
      if (!result) return false;
      local.onSettled?.(uploadId, result, Date.now() - started);
    } catch (err) {
      local.onError?.(err, uploadId);
      return false;
    }
    await this.queue.discard(uploadId).catch(() => undefined);
    return true;
  }

  private async owned(principal: Principal, uploadId: string): Promise<MultipartUpload> {
    const upload = /^mp_[A-Za-z0-9_-]{1,64}$/.test(uploadId) ? await this.store.get(uploadId) : undefined;
    if (!upload) throw new NotFoundError(`upload ${uploadId} not found`);
    if (upload.owner !== principal.clientId) throw new PermissionDeniedError(`upload ${uploadId} was started by another user`);
    return upload;
  }

  private async statusOf(id: string): Promise<MultipartUploadStatus> {
    const upload = await this.store.get(id);
    if (!upload) throw new NotFoundError(`upload ${id} not found`);
    return toStatus(upload);
  }

  /** A resumed start counts as activity (keeps the upload from expiring). */
  private async touch(upload: MultipartUpload): Promise<MultipartUpload | undefined> {
    await this.store.updateIf(upload.id, upload.state, {});
    return this.store.get(upload.id);
  }

  /** forceRestart: the previous upload goes, unless a complete on another replica took it meanwhile. */
  private async abandon(upload: MultipartUpload): Promise<void> {
    if (!(await this.store.deleteIf(upload.id, 'UPLOADING'))) return;
    // a start that died in its dedup left a handle no one was given
    if (upload.dedupHandleId) await this.handles.remove(upload.dedupHandleId);
    await this.storage.deleteStaging(upload.id);
    // (S3) the private copy of its hashed parts (one begun since, or still being written, is left to the orphan sweep)
    if (upload.snapshot) await this.storage.deleteStaging(upload.snapshot);
  }

  /** Seed 003: the same user, the same content (md5 and size): a new handle at once, sharing the bytes. */
  private async dedup(id: string, owner: string, request: MultipartUploadRequest): Promise<void> {
    const originalId = await this.store.dedupLookup(owner, request.contentMD5Hex, request.fileSizeBytes);
    if (!originalId) return;
    const original = await this.handles.liveObject(originalId);
    if (!original || original.handle.createdBy !== owner) {
      await this.store.dedupForget(owner, request.contentMD5Hex, request.fileSizeBytes, originalId);
      return;
    }
    const { object } = original;
    // the id is recorded first: a start repeated after a crash makes this handle, not a second one
    const handleId = await this.store.claimDedupHandle(id, await this.handles.allocateId());
    if (!handleId) return; // no longer UPLOADING (a forceRestart or complete elsewhere)
    // claim, then make sure the bytes are still there: the collector may have taken them just before
    await this.handles.claimContent(handleId, object.blob);
    if (!(await this.handles.hasContent(object))) return;
    await this.handles.create(
      handleId,
      { fileName: request.fileName, contentType: request.contentType, owner, storageLocationId: request.storageLocationId },
      {
        size: object.size,
        sha256: object.sha256,
        md5: object.md5 ?? request.contentMD5Hex,
        ...(object.crc32c ? { crc32c: object.crc32c } : {}),
      },
    );
    if (await this.store.completeAsDuplicate(id, handleId, originalId)) return;
    // no longer UPLOADING: unless a repeat of this start completed it with this very handle, the
    // upload was abandoned (or completed otherwise) and no one will be given this handle
    if ((await this.store.get(id))?.resultFileHandleId !== handleId) await this.handles.remove(handleId);
  }
}

/**
 * Writes one part through a BatchedWriter, hashing each network chunk as it arrives (still in the
 * CPU cache; a copy for a hashing thread would cost as much as the md5 itself). Stops writing as
 * soon as its lease may have lapsed (local deadline), so a stalled writer never overwrites bytes of
 * a PUT that took the part over.
 */
class PartWriter {
  private out?: BatchedWriter;
  private file?: StagingFile;
  private readonly lease: LeaseKeeper;
  /**
   * The part's md5, fed each batch once it is written, off the event loop (the native addon runs
   * it on libuv's pool): the event loop of multipart-api is what a machine's uploads queue behind
   * (HTTP parsing, writes, Redis), and md5 inline cost it ~2 s per GiB.
   */
  private readonly md5 = resumableHashing().start('md5');

  constructor(
    private readonly store: MultipartStore,
    private readonly partLease: PartLease,
    takenAt: number,
  ) {
    this.lease = new LeaseKeeper(
      () => store.renewPart(partLease),
      store.options.leaseTtlMs,
      takenAt,
      `the PUT of part ${partLease.partNumber} lost its lease; PUT the part again`,
    );
  }

  attach(file: StagingFile, partStart: number): void {
    this.file = file;
    this.out = new BatchedWriter(
      file,
      partStart,
      async (batch) => (await this.md5).update(batch),
      () => this.lease.check(),
    );
  }

  push(chunk: Buffer): Promise<void> {
    if (!this.out) throw new Error('part writer has no staging file');
    return this.out.push(chunk);
  }

  async finish(): Promise<string> {
    await this.out?.finish();
    await this.file?.sync();
    this.lease.check();
    return (await this.md5).hex();
  }

  async abort(): Promise<void> {
    this.lease.stop();
    await this.out?.settle();
    await this.store.abortPart(this.partLease).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.lease.stop();
    await this.file?.close().catch(() => undefined);
  }
}

function isAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error | undefined)?.message === 'aborted';
}
