import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, LOGGER } from '@ferry/core';
import { QUEUES } from '@ferry/jobs';
import type { Logger } from '@ferry/logging';
import { AssemblyWorker, MultipartAssembler } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';

const assemblyDuration = new Histogram({
  name: 'ferry_assembly_duration_seconds',
  help: 'Time to assemble, verify and publish a multipart upload',
  labelNames: ['outcome'],
  buckets: [0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900],
});
const assemblies = new Counter({ name: 'ferry_assemblies_total', help: 'Multipart assemblies settled', labelNames: ['outcome'] });

/** The assembly queue's consumer: thin, the work is MultipartAssembler's. */
@Injectable()
export class AssemblyProcessor implements OnApplicationBootstrap, OnApplicationShutdown {
  private worker?: AssemblyWorker;
  private connection?: Redis;

  constructor(
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly keys: RedisKeys,
    private readonly assembler: MultipartAssembler,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.connection = createRedis(this.config.redis.url, 'worker');
    this.worker = new AssemblyWorker(this.connection, this.keys.bullPrefix(), this.assembler, {
      concurrency: this.config.worker.concurrency,
      lockMs: this.config.worker.jobLockMs,
      onFailed: (uploadId, err) => this.logger.error({ err, uploadId, queue: QUEUES.assembly }, 'assembly attempt failed'),
      onError: (err) => this.logger.warn({ err, queue: QUEUES.assembly }, 'assembly worker: Redis trouble'),
      onSettled: (uploadId, result, ms) => {
        assemblyDuration.observe({ outcome: result.state }, ms / 1000);
        assemblies.inc({ outcome: result.state });
        this.logger.info({ uploadId, ...result, ms }, 'assembly settled');
      },
    });
    await this.worker.ready();
  }

  /** SIGTERM: stop taking jobs; a running assembly finishes (or is retried by another worker). */
  async onApplicationShutdown(): Promise<void> {
    await this.worker?.close();
    await this.connection?.quit().catch(() => this.connection?.disconnect());
  }
}
