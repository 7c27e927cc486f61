import type { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';

/** Something else that keeps uploads in staging (multipart uploads): the orphan sweep asks it too. */
export interface StagingOwner {
  exists(uploadId: string): Promise<boolean>;
}

/**
 * A face's own clean-up of an expiring session (multipart: its request index entry, an unused
 * dedup handle, a private copy of its parts): called once the session is `expiring`, before its
 * staged bytes and then the session are deleted, again by the next run if one stops half way.
 */
export interface ExpiryHook {
  expiring(uploadId: string): Promise<void>;
}

export interface ExpiryReport {
  expiredSessions: number;
  removedStaging: number;
}

/**
 * Removes uploads idle for longer than their lifetime, in three steps that no resume can slip
 * between: the session is marked expiring (no one can lease or see it any more), its staged bytes
 * are deleted, then the session; a run that stops half way is finished by the next one.
 * Also sweeps staging objects whose session is gone (e.g. its Redis key expired while no worker
 * ran) once they are older than the lifetime. Never touches an upload with a live writer lease.
 */
export class UploadExpiry {
  constructor(
    private readonly sessions: SessionStore,
    private readonly storage: Storage,
    private readonly idleLifetimeMs: number,
    private readonly otherOwners: StagingOwner[] = [],
    private readonly hooks: ExpiryHook[] = [],
  ) {}

  async run(now = Date.now(), batchSize = 500): Promise<ExpiryReport> {
    const cutoff = now - this.idleLifetimeMs;
    let expiredSessions = 0;
    let removedStaging = 0;
    for (;;) {
      const ids = await this.sessions.idleCandidates(cutoff, batchSize);
      let progressed = 0;
      for (const id of ids) {
        const outcome = await this.sessions.beginExpiry(id, cutoff, now);
        if (outcome === 'active' || outcome === 'pinned') continue;
        progressed++;
        // a session already gone (its key outlived by far its lifetime): its index entry was
        // dropped, and the sweep below removes its staged bytes once no one owns them
        if (outcome === 'gone') continue;
        for (const hook of this.hooks) await hook.expiring(id);
        await this.storage.deleteStaging(id);
        await this.sessions.endExpiry(id);
        expiredSessions++;
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
