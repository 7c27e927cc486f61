import { DynamicModule, Module } from '@nestjs/common';
import type { FerryConfig } from '@ferry/config';
import { FerryCoreModule, HealthController, LOGGER, MultipartCoreModule, REDIS, STORAGE, UploadsModule } from '@ferry/core';
import { BoundedCache, createBoundedCache } from '@ferry/cache';
import { Catalog } from '@ferry/catalog';
import type { Logger } from '@ferry/logging';
import { DigestProgress, FileHandles, MultipartAssembler, MultipartExpiryHook, MultipartStore, resumableDigests } from '@ferry/multipart';
import { ObjectExpiry, ObjectStagingOwner } from '@ferry/objects';
import { Redis, RedisKeys } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { UploadExpiry } from '@ferry/uploads';
import { AssemblyProcessor } from './assembly.processor';
import { MaintenanceProcessor } from './maintenance.processor';

/** assembler-worker: BullMQ processors (assembly, maintenance) plus health and metrics over HTTP. */
@Module({})
export class WorkerModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [FerryCoreModule.forApp('assembler-worker', config), UploadsModule, MultipartCoreModule],
      controllers: [HealthController],
      providers: [
        {
          provide: UploadExpiry,
          useFactory: (sessions: SessionStore, storage: Storage, multipart: MultipartStore, handles: FileHandles) =>
            new UploadExpiry(
              sessions,
              storage,
              config.uploads.idleLifetimeMs,
              [multipart, new ObjectStagingOwner(sessions)],
              [new MultipartExpiryHook(multipart, storage, handles)],
            ),
          inject: [SessionStore, STORAGE, MultipartStore, FileHandles],
        },
        {
          provide: MultipartAssembler,
          useFactory: (store: MultipartStore, handles: FileHandles, storage: Storage, logger: Logger) => {
            const progress = new DigestProgress(store, storage, resumableDigests(), {
              leaseTtlMs: config.uploads.leaseTtlMs,
              onError: (err, uploadId) => logger.warn({ err, uploadId }, 'multipart digests: a round failed'),
            });
            return new MultipartAssembler(store, handles, storage, progress);
          },
          inject: [MultipartStore, FileHandles, STORAGE, LOGGER],
        },
        {
          provide: ObjectExpiry,
          useFactory: (catalog: Catalog, storage: Storage) => new ObjectExpiry(catalog, storage, config.objects.blobGraceMs),
          inject: [Catalog, STORAGE],
        },
        {
          provide: BoundedCache,
          useFactory: (redis: Redis, keys: RedisKeys, catalog: Catalog, storage: Storage) =>
            createBoundedCache(config.reapi.cache, config.objects.blobGraceMs, redis, keys, catalog, storage),
          inject: [REDIS, RedisKeys, Catalog, STORAGE],
        },
        MaintenanceProcessor,
        AssemblyProcessor,
      ],
    };
  }
}
