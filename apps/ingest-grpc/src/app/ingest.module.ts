import { DynamicModule, Module } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { ByteStreamService, ReapiInstances } from '@ferry/bytestream';
import type { FerryConfig } from '@ferry/config';
import { FerryCoreModule, REDIS, UploadsModule } from '@ferry/core';
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
          provide: ByteStreamService,
          useFactory: (engine: UploadEngine, auth: Authenticator, instances: ReapiInstances) =>
            new ByteStreamService(engine, auth, {
              maxNameBytes: config.uploads.maxNameBytes,
              instances,
              maxBlobBytes: config.reapi.maxBlobBytes,
              zeroResume: config.reapi.zeroResume,
            }),
          inject: [UploadEngine, Authenticator, ReapiInstances],
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
          useFactory: (engine: UploadEngine, auth: Authenticator, instances: ReapiInstances, redis: Redis, keys: RedisKeys) =>
            new ReapiService(engine, auth, new ActionCacheStore(redis, keys, config.reapi.actionCacheTtlMs), {
              instances,
              maxBatchBytes: config.reapi.maxBatchBytes,
              maxBlobBytes: config.reapi.maxBlobBytes,
            }),
          inject: [UploadEngine, Authenticator, ReapiInstances, REDIS, RedisKeys],
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
