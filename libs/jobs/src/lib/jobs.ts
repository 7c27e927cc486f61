/**
 * BullMQ queues, job names and payloads, in one place. The queue prefix is hash-tagged
 * (RedisKeys.bullPrefix) so each queue's keys share one Redis Cluster slot.
 */
export const QUEUES = {
  /** Periodic housekeeping: expiry of idle uploads (later: objects, garbage collection). */
  maintenance: 'maintenance',
  /** Work proportional to an object's size once its last byte is in: joining and verifying multipart uploads. */
  assembly: 'assembly',
} as const;

export const JOBS = {
  expireUploads: 'expire-uploads',
  assembleMultipart: 'assemble-multipart',
} as const;

export interface AssembleMultipartPayload {
  uploadId: string;
}

export interface AssembleMultipartResult {
  state: 'COMPLETED' | 'FAILED';
  fileHandleId?: string;
  reason?: string;
}

/** Deterministic job id: completing an upload twice enqueues one assembly. */
export function assemblyJobId(uploadId: string): string {
  return `assemble-${uploadId}`;
}

/** Retries of an assembly job whose worker failed or died (the job is idempotent). */
export const ASSEMBLY_ATTEMPTS = 8;

export interface ExpireUploadsPayload {
  /** Upper bound of sessions examined per run. */
  batchSize: number;
}

export interface ExpireUploadsResult {
  expiredSessions: number;
  removedStaging: number;
  expiredObjects?: number;
  collectedBlobs?: number;
  /** Entries and bytes the bounded cache evicted (FERRY_CACHE_MAX_BYTES). */
  evictedEntries?: number;
  evictedBytes?: number;
}

/** Deterministic id of the repeatable expiry job scheduler (one per deployment, whatever the replica count). */
export const EXPIRE_UPLOADS_SCHEDULER_ID = 'expire-uploads-every';
