import type { AssembleMultipartResult } from '@ferry/jobs';
import type { Storage } from '@ferry/storage';
import type { HashPool } from '@ferry/uploads';
import { FileHandles } from './file-handles';
import { MultipartStore, MultipartUpload } from './multipart-store';

/**
 * The assembly of a completed multipart upload, run by the worker as an idempotent job.
 *
 * Parts were written at their offsets in one staging object, so there is nothing to join: one
 * sequential read hashes the whole file on a pool thread, the md5 is checked against the client's
 * contentMD5Hex, and the staging object is renamed into the content-addressed blobs. Every step can
 * be repeated after a crash: the digests are recorded before the rename, the handle id before the
 * handle, and each write is idempotent.
 *
 * On S3 the part URLs reach the bucket itself, and stay valid until they expire: a client could PUT
 * a part again between the hashing and the copy into the blob, and the blob named by one sha256
 * would hold other bytes (served to everyone whose content has that sha256). So the parts are first
 * copied, inside the bucket, to a snapshot no URL names; the snapshot is hashed and published, and
 * its id is recorded with its digests.
 */
export class MultipartAssembler {
  constructor(
    private readonly store: MultipartStore,
    private readonly handles: FileHandles,
    private readonly storage: Storage,
    private readonly hashPool: HashPool,
  ) {}

  async assemble(uploadId: string): Promise<AssembleMultipartResult> {
    const upload = await this.store.get(uploadId);
    if (!upload) return { state: 'FAILED', reason: `upload ${uploadId} no longer exists` };
    if (upload.state === 'COMPLETED') return { state: 'COMPLETED', fileHandleId: upload.resultFileHandleId };
    if (upload.state === 'FAILED') return { state: 'FAILED', reason: upload.failureReason };
    if (upload.state !== 'ASSEMBLING') return { state: 'FAILED', reason: `upload ${uploadId} is ${upload.state}, not completing` };

    const size = upload.request.fileSizeBytes;
    let digests = upload.digests;
    let source = upload.snapshot ?? uploadId;
    if (!digests) {
      source = await this.snapshot(uploadId);
      const staged = await this.storage.stagingSize(source);
      if (staged !== size)
        return this.fail(upload, `the staged parts are missing (${staged ?? 0} of ${size} bytes found); start the upload again`, source);
      digests = await this.hash(source, size);
      if (digests.md5 !== upload.request.contentMD5Hex) {
        return this.fail(
          upload,
          `the MD5 of the assembled file is ${digests.md5}, but contentMD5Hex is ${upload.request.contentMD5Hex}`,
          source,
        );
      }
      const recorded = { ...digests, ...(source !== uploadId ? { snapshot: source } : {}) };
      if (!(await this.store.updateIf(uploadId, 'ASSEMBLING', recorded))) {
        if (source !== uploadId) await this.storage.deleteStaging(source);
        return this.settled(uploadId);
      }
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
    if (!(await this.store.updateIf(uploadId, 'ASSEMBLING', { state: 'COMPLETED', resultFileHandleId: handleId }))) {
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

  /** The staging object to verify and publish: on S3 a private copy of the parts (see above). */
  private async snapshot(uploadId: string): Promise<string> {
    const direct = this.storage.direct;
    if (!direct) return uploadId;
    const snapshot = MultipartStore.snapshotId(uploadId);
    await direct.snapshotStaging(uploadId, snapshot);
    return snapshot;
  }

  /** sha256 (the content address) and md5 (Synapse's contentMD5Hex, the handle's etag). */
  private hash(uploadId: string, size: number): Promise<{ sha256: string; md5: string }> {
    return this.hashPool.digestOf(['sha256', 'md5'], this.storage.readStaging(uploadId, 0, size));
  }

  private async fail(upload: MultipartUpload, reason: string, snapshot?: string): Promise<AssembleMultipartResult> {
    if (snapshot && snapshot !== upload.id) await this.storage.deleteStaging(snapshot);
    if (!(await this.store.updateIf(upload.id, 'ASSEMBLING', { state: 'FAILED', failureReason: reason }))) return this.settled(upload.id);
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
