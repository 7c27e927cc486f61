import { DynamicModule, Inject, Injectable, Module, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Authenticator, UrlSigner } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, FerryCoreModule, HealthController, LOGGER, MultipartCoreModule, STORAGE, UploadsModule } from '@ferry/core';
import type { Logger } from '@ferry/logging';
import {
  AssemblyQueue,
  DigestProgress,
  FileHandles,
  MultipartAssembler,
  MultipartService,
  MultipartStore,
  resumableDigests,
} from '@ferry/multipart';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { TusDownloads, TusService } from '@ferry/tus';
import { UploadEngine } from '@ferry/uploads';
import { DocsController } from './docs.controller';
import { FileHandleController } from './file-handle.controller';
import { assemblies, assemblyDuration, digestBytes } from './metrics';
import { MultipartController } from './multipart.controller';
import { TusController } from './tus.controller';
import { TusDownloadController } from './tus-download.controller';
import { UploadPageController } from './upload-page.controller';

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

/** The whole-file digests advanced as parts land; background rounds still running are awaited at shutdown. */
@Injectable()
class DigestProgressHolder implements OnApplicationShutdown {
  readonly progress: DigestProgress;

  constructor(
    @Inject(FERRY_CONFIG) config: FerryConfig,
    @Inject(LOGGER) logger: Logger,
    store: MultipartStore,
    @Inject(STORAGE) storage: Storage,
  ) {
    this.progress = new DigestProgress(store, storage, resumableDigests(), {
      leaseTtlMs: config.uploads.leaseTtlMs,
      onError: (err, uploadId) => logger.warn({ err, uploadId }, 'multipart digests: a round failed (the next one resumes)'),
      onHashed: (bytes) => digestBytes.inc(bytes),
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.progress.idle();
  }
}

/** multipart-api: the Synapse-style multipart REST API and its presigned-URL data plane. */
@Module({})
export class MultipartApiModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: MultipartApiModule,
      imports: [FerryCoreModule.forApp('multipart-api', config), MultipartCoreModule, UploadsModule],
      // TusDownloadController after TusController: HEAD /files/{id} is tus's, GET is the download
      controllers: [
        HealthController,
        DocsController,
        MultipartController,
        FileHandleController,
        TusController,
        TusDownloadController,
        UploadPageController,
      ],
      providers: [
        {
          provide: TusService,
          useFactory: (engine: UploadEngine, sessions: SessionStore, auth: Authenticator) =>
            new TusService(engine, sessions, auth, { maxSize: config.tus.maxSize, uploadLifetimeMs: config.tus.uploadLifetimeMs }),
          inject: [UploadEngine, SessionStore, Authenticator],
        },
        {
          provide: TusDownloads,
          useFactory: (engine: UploadEngine, auth: Authenticator, storage: Storage) => {
            if (!config.signingKey) throw new Error('multipart-api needs a signing key (FERRY_SIGNING_KEY)');
            return new TusDownloads(engine, auth, new UrlSigner(config.signingKey), { urlTtlMs: config.signedUrlTtlMs }, storage.direct);
          },
          inject: [UploadEngine, Authenticator, STORAGE],
        },
        AssemblyQueueHolder,
        DigestProgressHolder,
        {
          provide: MultipartService,
          useFactory: (
            store: MultipartStore,
            handles: FileHandles,
            storage: Storage,
            queue: AssemblyQueueHolder,
            auth: Authenticator,
            digests: DigestProgressHolder,
            logger: Logger,
          ) => {
            if (!config.signingKey) throw new Error('multipart-api needs a signing key (FERRY_SIGNING_KEY)');
            const { progress } = digests;
            return new MultipartService(
              store,
              handles,
              storage,
              queue.queue,
              auth,
              new UrlSigner(config.signingKey),
              {
                urlTtlMs: config.signedUrlTtlMs,
                completeWaitMs: config.multipart.completeWaitMs,
                maxUrlBatch: config.multipart.maxUrlBatch,
                inlineCompleteBytes: config.multipart.inlineCompleteBytes,
              },
              {
                progress,
                assembler: new MultipartAssembler(store, handles, storage, progress),
                onError: (err, uploadId) => logger.warn({ err, uploadId }, 'assembly in complete failed: the worker takes over'),
                onSettled: (uploadId, result, ms) => {
                  assemblyDuration.observe({ outcome: result.state }, ms / 1000);
                  assemblies.inc({ outcome: result.state });
                  logger.info({ uploadId, ...result, ms }, 'assembly settled in complete');
                },
              },
            );
          },
          inject: [MultipartStore, FileHandles, STORAGE, AssemblyQueueHolder, Authenticator, DigestProgressHolder, LOGGER],
        },
      ],
    };
  }
}
