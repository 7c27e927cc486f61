import { DynamicModule, Inject, Injectable, Module, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Authenticator, UrlSigner } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, FerryCoreModule, HealthController, LOGGER, MultipartCoreModule, STORAGE } from '@ferry/core';
import type { Logger } from '@ferry/logging';
import { AssemblyQueue, FileHandles, MultipartService, MultipartStore } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { DocsController } from './docs.controller';
import { FileHandleController } from './file-handle.controller';
import { MultipartController } from './multipart.controller';

/** The producer side of the assembly queue, on its own connection (closed after the queue). */
@Injectable()
class AssemblyQueueHolder implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly connection: Redis;
  readonly queue: AssemblyQueue;

  constructor(
    @Inject(FERRY_CONFIG) config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    keys: RedisKeys,
  ) {
    this.connection = createRedis(config.redis.url, 'producer');
    this.queue = new AssemblyQueue(this.connection, keys.bullPrefix(), (err) => this.logger.warn({ err }, 'assembly queue: Redis trouble'));
  }

  async onApplicationBootstrap(): Promise<void> {
    // the producer connection has no offline queue: be connected before the first complete
    await waitForRedis(this.connection).catch((err: unknown) => this.logger.warn({ err }, 'Redis not reachable yet'));
  }

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close();
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}

/** multipart-api: the Synapse-style multipart REST API and its presigned-URL data plane. */
@Module({})
export class MultipartApiModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: MultipartApiModule,
      imports: [FerryCoreModule.forApp('multipart-api', config), MultipartCoreModule],
      controllers: [HealthController, DocsController, MultipartController, FileHandleController],
      providers: [
        AssemblyQueueHolder,
        {
          provide: MultipartService,
          useFactory: (store: MultipartStore, handles: FileHandles, storage: Storage, queue: AssemblyQueueHolder, auth: Authenticator) => {
            if (!config.signingKey) throw new Error('multipart-api needs a signing key (FERRY_SIGNING_KEY)');
            return new MultipartService(store, handles, storage, queue.queue, auth, new UrlSigner(config.signingKey), {
              urlTtlMs: config.signedUrlTtlMs,
              completeWaitMs: config.multipart.completeWaitMs,
              maxUrlBatch: config.multipart.maxUrlBatch,
            });
          },
          inject: [MultipartStore, FileHandles, STORAGE, AssemblyQueueHolder, Authenticator],
        },
      ],
    };
  }
}
