import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Job, Queue, Worker } from 'bullmq';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, LOGGER } from '@ferry/core';
import { EXPIRE_UPLOADS_SCHEDULER_ID, ExpireUploadsPayload, ExpireUploadsResult, JOBS, QUEUES } from '@ferry/jobs';
import type { Logger } from '@ferry/logging';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';
import { ObjectExpiry } from '@ferry/objects';
import { UploadExpiry } from '@ferry/uploads';
import { BoundedCache } from '@ferry/cache';

const jobDuration = new Histogram({
  name: 'ferry_job_duration_seconds',
  help: 'Duration of worker jobs',
  labelNames: ['queue', 'job', 'outcome'],
});
const expired = new Counter({ name: 'ferry_uploads_expired_total', help: 'Idle uploads removed by the expiry job' });
const expiredObjects = new Counter({ name: 'ferry_objects_expired_total', help: 'Objects removed at their expires' });
const collectedBlobs = new Counter({ name: 'ferry_blobs_collected_total', help: 'Blobs deleted because no object references them' });
const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed'] as const;
/** Queues whose depth the gauge reports, set while the processor runs (read at each scrape). */
const watchedQueues: Queue[] = [];
new Gauge({
  name: 'ferry_queue_jobs',
  help: 'Jobs in each BullMQ queue by state (read from Redis at each scrape)',
  labelNames: ['queue', 'state'],
  async collect() {
    this.reset();
    for (const queue of watchedQueues) {
      const counts = await queue.getJobCounts(...JOB_STATES).catch(() => undefined);
      for (const state of JOB_STATES) if (counts) this.set({ queue: queue.name, state }, counts[state] ?? 0);
    }
  },
});

/**
 * The maintenance queue: a repeatable job (one scheduler per deployment, whatever the number of
 * worker replicas) that expires idle uploads. Thin: the work is UploadExpiry's.
 */
@Injectable()
export class MaintenanceProcessor implements OnApplicationBootstrap, OnApplicationShutdown {
  private worker?: Worker<ExpireUploadsPayload, ExpireUploadsResult>;
  private queue?: Queue<ExpireUploadsPayload, ExpireUploadsResult>;
  /** Only to report the assembly queue's depth (the AssemblyProcessor consumes it). */
  private assemblyQueue?: Queue;
  /** BullMQ leaves connections it was given open: we close them after the worker and queue. */
  private readonly connections: Redis[] = [];

  constructor(
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly keys: RedisKeys,
    private readonly expiry: UploadExpiry,
    private readonly objectExpiry: ObjectExpiry,
    private readonly cache: BoundedCache,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const prefix = this.keys.bullPrefix();
    const producer = createRedis(this.config.redis.url, 'producer');
    const consumer = createRedis(this.config.redis.url, 'worker');
    this.connections.push(producer, consumer);
    this.queue = new Queue(QUEUES.maintenance, { connection: producer, prefix });
    // BullMQ reconnects by itself; an 'error' event without a listener would crash the process
    this.queue.on('error', (err) => this.logger.warn({ err }, 'maintenance queue: Redis trouble'));
    this.assemblyQueue = new Queue(QUEUES.assembly, { connection: producer, prefix });
    this.assemblyQueue.on('error', (err) => this.logger.warn({ err }, 'assembly queue: Redis trouble'));
    watchedQueues.push(this.queue as unknown as Queue, this.assemblyQueue);
    await this.queue.upsertJobScheduler(
      EXPIRE_UPLOADS_SCHEDULER_ID,
      { every: this.config.worker.expireIntervalMs },
      { name: JOBS.expireUploads, data: { batchSize: 500 }, opts: { removeOnComplete: 100, removeOnFail: 100 } },
    );
    this.worker = new Worker(QUEUES.maintenance, (job) => this.process(job), {
      connection: consumer,
      prefix,
      concurrency: 1,
    });
    this.worker.on('failed', (job, err) => this.logger.error({ err, job: job?.name, id: job?.id }, 'job failed'));
    this.worker.on('error', (err) => this.logger.warn({ err }, 'maintenance worker: Redis trouble'));
    this.logger.info({ intervalMs: this.config.worker.expireIntervalMs }, 'maintenance worker started');
  }

  private async process(job: Job<ExpireUploadsPayload, ExpireUploadsResult>): Promise<ExpireUploadsResult> {
    const end = jobDuration.startTimer({ queue: QUEUES.maintenance, job: job.name });
    try {
      if (job.name !== JOBS.expireUploads) throw new Error(`unknown job ${job.name}`);
      const now = Date.now();
      const { evictedEntries, evictedBytes } = await this.cache.run(now);
      const report = {
        ...(await this.expiry.run(now, job.data.batchSize)),
        ...(await this.objectExpiry.run(now, job.data.batchSize)),
        evictedEntries,
        evictedBytes,
      };
      expired.inc(report.expiredSessions);
      expiredObjects.inc(report.expiredObjects);
      collectedBlobs.inc(report.collectedBlobs);
      if (Object.values(report).some((n) => n > 0)) this.logger.info(report, 'expiry');
      end({ outcome: 'completed' });
      return report;
    } catch (err) {
      end({ outcome: 'failed' });
      throw err;
    }
  }

  /** SIGTERM: stop taking jobs, let the running one finish, close connections. */
  async onApplicationShutdown(): Promise<void> {
    watchedQueues.splice(0);
    await this.worker?.close();
    await this.queue?.close();
    await this.assemblyQueue?.close();
    await Promise.all(this.connections.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
