import { Module } from '@nestjs/common';
import { Catalog } from '@ferry/catalog';
import type { FerryConfig } from '@ferry/config';
import { FileHandles, MultipartStore } from '@ferry/multipart';
import { Redis, RedisKeys } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { FERRY_CONFIG, REDIS, STORAGE } from './tokens';

/** Multipart upload state and file handles, for the apps that serve or assemble multipart uploads. */
@Module({
  providers: [
    {
      provide: MultipartStore,
      useFactory: (config: FerryConfig, redis: Redis, keys: RedisKeys) =>
        new MultipartStore(redis, keys, { idleLifetimeMs: config.uploads.idleLifetimeMs, leaseTtlMs: config.uploads.leaseTtlMs }),
      inject: [FERRY_CONFIG, REDIS, RedisKeys],
    },
    {
      provide: FileHandles,
      useFactory: (redis: Redis, keys: RedisKeys, catalog: Catalog, storage: Storage) => new FileHandles(redis, keys, catalog, storage),
      inject: [REDIS, RedisKeys, Catalog, STORAGE],
    },
  ],
  exports: [MultipartStore, FileHandles],
})
export class MultipartCoreModule {}
