import type { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';

/** Something else that keeps uploads in staging (multipart uploads): the orphan sweep asks it too. */
export interface StagingOwner {
  exists(uploadId: string): Promise<boolean>;
}

export interface ExpiryReport {
  expiredSessions: number;
  removedStaging: number;
}

/**
 * Removes uploads idle for longer than their lifetime: the session in Redis, then its staged bytes.
 * Also sweeps staging objects whose session is gone (e.g. its Redis key expired while no worker
 * ran) once they are older than the lifetime. Never touches an upload with a live writer lease.
 */
export class UploadExpiry {
  constructor(
    private readonly sessions: SessionStore,
    private readonly storage: Storage,
    private readonly idleLifetimeMs: number,
    private readonly otherOwners: StagingOwner[] = [],
  ) {}

  async run(now = Date.now(), batchSize = 500): Promise<ExpiryReport> {
    const cutoff = now - this.idleLifetimeMs;
    let expiredSessions = 0;
    let removedStaging = 0;
    for (;;) {
      const ids = await this.sessions.idleCandidates(cutoff, batchSize);
      let progressed = 0;
      for (const id of ids) {
        if (await this.sessions.expireIfIdle(id, cutoff)) {
          await this.storage.deleteStaging(id);
          expiredSessions++;
          progressed++;
        }
      }
      if (ids.length < batchSize || progressed === 0) break;
    }
    for await (const entry of this.storage.listStaging()) {
      if (entry.modifiedMs > cutoff) continue;
      if (await this.owned(entry.uploadId)) continue;
      await this.storage.deleteStaging(entry.uploadId);
      removedStaging++;
    }
    return { expiredSessions, removedStaging };
  }

  private async owned(uploadId: string): Promise<boolean> {
    if (await this.sessions.exists(uploadId)) return true;
    for (const owner of this.otherOwners) if (await owner.exists(uploadId)) return true;
    return false;
  }
}
