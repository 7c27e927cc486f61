import type { AssembleMultipartResult } from '@ferry/jobs';
import type { Storage } from '@ferry/storage';
import { DigestProgress, PartReplacedError } from './digest-progress';
import { FileHandles } from './file-handles';
import { MultipartStore, MultipartUpload } from './multipart-store';

/**
 * The assembly of a completed multipart upload: run by multipart-api itself when complete finds
 * little left to hash, else by the worker as an idempotent job.
 *
 * Parts were written at their offsets in one staging object, so there is nothing to join; and the
 * whole-file digests were advanced as the parts landed (DigestProgress), so what is left is to hash
 * the last parts, if any, check the md5 against the client's contentMD5Hex, and move the hashed
 * bytes into the content-addressed blobs: on disk the staging object itself (renamed), on S3 the
 * private copy DigestProgress wrote of exactly the bytes it hashed (clients can still PUT to the
 * parts' URLs; see DigestProgress). Every step can be repeated after a crash: the digests are
 * recorded before the publishing, the handle id before the handle, and each write is idempotent.
 */
export class MultipartAssembler {
  constructor(
    private readonly store: MultipartStore,
    private readonly handles: FileHandles,
    private readonly storage: Storage,
    private readonly progress: DigestProgress,
  ) {}

  /**
   * Settles the upload. With a `deadline` (ms since the epoch), gives up and answers undefined if
   * the digests are not all there by then (another process holds their lease and is still at it).
   */
  async assemble(uploadId: string, deadline?: number): Promise<AssembleMultipartResult | undefined> {
    const upload = await this.store.get(uploadId);
    if (!upload) return { state: 'FAILED', reason: `upload ${uploadId} no longer exists` };
    if (upload.state === 'COMPLETED') return { state: 'COMPLETED', fileHandleId: upload.resultFileHandleId };
    if (upload.state === 'FAILED') return { state: 'FAILED', reason: upload.failureReason };
    if (upload.state !== 'ASSEMBLING') return { state: 'FAILED', reason: `upload ${uploadId} is ${upload.state}, not completing` };

    const size = upload.request.fileSizeBytes;
    let digests = upload.digests;
    let source = upload.snapshot ?? uploadId;
    if (!digests) {
      let final;
      try {
        final = await this.progress.finish(uploadId, deadline);
      } catch (err) {
        if (!(err instanceof PartReplacedError)) throw err;
        return this.fail(upload, `${err.message}; start the upload again`, (await this.store.get(uploadId))?.snapshot);
      }
      if (!final) return undefined;
      source = final.source;
      const staged = await this.storage.stagingSize(source);
      if (staged !== size)
        return this.fail(upload, `the staged parts are missing (${staged ?? 0} of ${size} bytes found); start the upload again`, source);
      digests = { sha256: final.sha256, md5: final.md5 };
      if (digests.md5 !== upload.request.contentMD5Hex) {
        return this.fail(
          upload,
          `the MD5 of the assembled file is ${digests.md5}, but contentMD5Hex is ${upload.request.contentMD5Hex}`,
          source,
        );
      }
      // (the private copy's id, on S3, was recorded when DigestProgress began it)
      if (!(await this.store.updateIf(uploadId, 'ASSEMBLING', digests))) return this.settled(uploadId);
    }

    const handleId = await this.store.claimHandle(uploadId, await this.handles.allocateId());
    if (!handleId) return this.settled(uploadId);
    await this.handles.storeContent(handleId, source, digests.sha256);
    if (source !== uploadId) await this.storage.deleteStaging(uploadId); // what clients could still PUT to

    const { request } = upload;
    await this.handles.create(
      handleId,
      { fileName: request.fileName, contentType: request.contentType, owner: upload.owner, storageLocationId: request.storageLocationId },
      { size, ...digests },
    );
    await this.store.dedupRecord(upload.owner, digests.md5, size, handleId);
    if (!(await this.store.updateIf(uploadId, 'ASSEMBLING', { resultFileHandleId: handleId }, 'COMPLETED'))) {
      return this.settled(uploadId);
    }
    return { state: 'COMPLETED', fileHandleId: handleId };
  }

  /**
   * The assembly of `uploadId` failed for good (its job's retries are spent: storage or Redis kept
   * failing). The upload is not failed, since its parts are intact: a complete revives the job,
   * and otherwise the upload expires after its idle lifetime, like one its client abandoned.
   */
  async gaveUp(uploadId: string): Promise<void> {
    await this.store.assemblyGaveUp(uploadId);
  }

  private async fail(upload: MultipartUpload, reason: string, snapshot?: string): Promise<AssembleMultipartResult> {
    if (snapshot && snapshot !== upload.id) await this.storage.deleteStaging(snapshot);
    if (!(await this.store.updateIf(upload.id, 'ASSEMBLING', { failureReason: reason }, 'FAILED'))) return this.settled(upload.id);
    await this.storage.deleteStaging(upload.id);
    return { state: 'FAILED', reason };
  }

  /** Someone else (a previous attempt still running) settled the upload: report what it decided. */
  private async settled(uploadId: string): Promise<AssembleMultipartResult> {
    const u = await this.store.get(uploadId);
    if (u?.state === 'COMPLETED') return { state: 'COMPLETED', fileHandleId: u.resultFileHandleId };
    return { state: 'FAILED', reason: u?.failureReason ?? `upload ${uploadId} is ${u?.state ?? 'gone'}` };
  }
}
