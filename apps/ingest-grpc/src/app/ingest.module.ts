import { DynamicModule, Module } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { ByteStreamService, ReapiInstances } from '@ferry/bytestream';
import { BoundedCache, createBoundedCache } from '@ferry/cache';
import { Catalog } from '@ferry/catalog';
import type { FerryConfig } from '@ferry/config';
import { FerryCoreModule, REDIS, STORAGE, UploadsModule } from '@ferry/core';
import type { Storage } from '@ferry/storage';
import { GcsService } from '@ferry/gcs';
import { ActionCacheStore, ReapiService } from '@ferry/reapi';
import { Redis, RedisKeys } from '@ferry/redis';
import { UploadEngine } from '@ferry/uploads';
import { ByteStreamGrpc } from './bytestream.grpc';
import { CacheHttpServer } from './cache-http.server';
import { CallDrain } from './call-drain';
import { GrpcServer } from './grpc-server.service';
import { MetricsServer } from './metrics-server.service';
import { ReapiGrpc } from './reapi.grpc';
import { StorageGrpc } from './storage.grpc';

/**
 * ingest-grpc: ByteStream, GCS v2 and the REAPI cache services (gRPC, and Bazel's HTTP cache
 * protocol on its own port), protocol faces over the shared upload engine.
 */
@Module({})
export class IngestModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: IngestModule,
      imports: [FerryCoreModule.forApp('ingest-grpc', config), UploadsModule],
      providers: [
        { provide: ReapiInstances, useFactory: () => new ReapiInstances(config.reapi.instances) },
        {
          // (FERRY_CACHE_MAX_BYTES): every CAS blob published through the engine counts
          provide: BoundedCache,
          useFactory: (redis: Redis, keys: RedisKeys, catalog: Catalog, storage: Storage, engine: UploadEngine) => {
            const cache = createBoundedCache(config.reapi.cache, config.objects.blobGraceMs, redis, keys, catalog, storage);
            if (cache.bounded) engine.onPublished((object) => cache.published(object));
            return cache;
          },
          inject: [REDIS, RedisKeys, Catalog, STORAGE, UploadEngine],
        },
        {
          provide: ByteStreamService,
          useFactory: (engine: UploadEngine, auth: Authenticator, instances: ReapiInstances, cache: BoundedCache) =>
            new ByteStreamService(engine, auth, {
              maxNameBytes: config.uploads.maxNameBytes,
              instances,
              maxBlobBytes: config.reapi.maxBlobBytes,
              zeroResume: config.reapi.zeroResume,
              ...(cache.bounded ? { cache } : {}),
            }),
          inject: [UploadEngine, Authenticator, ReapiInstances, BoundedCache],
        },
        {
          provide: GcsService,
          useFactory: (engine: UploadEngine, auth: Authenticator) =>
            new GcsService(engine, auth, {
              maxNameBytes: config.uploads.maxNameBytes,
              buckets: config.gcs.buckets,
              finishedRetentionMs: config.uploads.idleLifetimeMs,
            }),
          inject: [UploadEngine, Authenticator],
        },
        {
          provide: ReapiService,
          useFactory: (
            engine: UploadEngine,
            auth: Authenticator,
            instances: ReapiInstances,
            redis: Redis,
            keys: RedisKeys,
            bounded: BoundedCache,
          ) => {
            const cache = bounded.bounded ? bounded : undefined;
            return new ReapiService(engine, auth, new ActionCacheStore(redis, keys, config.reapi.actionCacheTtlMs, cache), {
              instances,
              maxBatchBytes: config.reapi.maxBatchBytes,
              maxBlobBytes: config.reapi.maxBlobBytes,
              ...(cache ? { cache } : {}),
            });
          },
          inject: [UploadEngine, Authenticator, ReapiInstances, REDIS, RedisKeys, BoundedCache],
        },
        CallDrain,
        ByteStreamGrpc,
        StorageGrpc,
        ReapiGrpc,
        GrpcServer,
        MetricsServer,
        CacheHttpServer,
      ],
      exports: [GrpcServer, MetricsServer, CacheHttpServer],
    };
  }
}
