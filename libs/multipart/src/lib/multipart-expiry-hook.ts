import type { Storage } from '@ferry/storage';
import type { FileHandles } from './file-handles';
import type { MultipartStore } from './multipart-store';

/**
 * What expiring a multipart upload removes besides its session and staged parts (which the one
 * expiry of upload sessions, UploadExpiry, removes): its entry in the user's request index, the
 * handle a start that died in its dedup left unused, and on S3 the private copy of its hashed parts.
 * Idempotent: an expiry that stops half way runs it again.
 */
export class MultipartExpiryHook {
  constructor(
    private readonly store: MultipartStore,
    private readonly storage: Storage,
    private readonly handles: FileHandles,
  ) {}

  async expiring(uploadId: string): Promise<void> {
    const left = await this.store.expiring(uploadId);
    if (!left) return;
    if (left.unusedHandleId) await this.handles.remove(left.unusedHandleId);
    if (left.snapshot) await this.storage.deleteStaging(left.snapshot);
    await this.store.forgetRequest(uploadId, left.owner, left.requestKey);
  }
}
