/**
 * BullMQ queues, job names and payloads, in one place. The queue prefix is hash-tagged
 * (RedisKeys.bullPrefix) so each queue's keys share one Redis Cluster slot.
 */
export const QUEUES = {
  /** Periodic housekeeping: expiry of idle uploads (later: objects, garbage collection). */
  maintenance: 'maintenance',
} as const;

export const JOBS = {
  expireUploads: 'expire-uploads',
} as const;

export interface ExpireUploadsPayload {
  /** Upper bound of sessions examined per run. */
  batchSize: number;
}

export interface ExpireUploadsResult {
  expiredSessions: number;
  removedStaging: number;
}

/** Deterministic id of the repeatable expiry job scheduler (one per deployment, whatever the replica count). */
export const EXPIRE_UPLOADS_SCHEDULER_ID = 'expire-uploads-every';
