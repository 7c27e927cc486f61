import type { Storage } from '@ferry/storage';
import type { FileHandles } from './file-handles';
import type { MultipartStore } from './multipart-store';

/**
 * Removes multipart uploads untouched for longer than their lifetime, with their staged parts and
 * their entry in the user's request index. A PUT in progress renews its upload's activity, so a
 * slow part is never expired under its writer.
 */
export class MultipartExpiry {
  constructor(
    private readonly store: MultipartStore,
    private readonly storage: Storage,
    private readonly handles: FileHandles,
    private readonly idleLifetimeMs: number,
  ) {}

  async run(now = Date.now(), batchSize = 500): Promise<number> {
    const cutoff = now - this.idleLifetimeMs;
    let expired = 0;
    for (;;) {
      const ids = await this.store.idleCandidates(cutoff, batchSize);
      let progressed = 0;
      for (const id of ids) {
        const { outcome, unusedHandleId, snapshot } = await this.store.expireIfIdle(id, cutoff);
        if (outcome === 'active') continue;
        progressed++; // either way it left the batch of candidates
        if (outcome === 'assembling') continue;
        // a start that died in its dedup left a handle no one was given
        if (unusedHandleId) await this.handles.remove(unusedHandleId);
        await this.storage.deleteStaging(id);
        // (S3) the private copy of its hashed parts
        if (snapshot) await this.storage.deleteStaging(snapshot);
        expired++;
      }
      if (ids.length < batchSize || progressed === 0) return expired;
    }
  }
}
