import { DynamicModule, Module } from '@nestjs/common';
import { Authenticator, UrlSigner } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FerryCoreModule, HealthController, REDIS, STORAGE, UploadsModule } from '@ferry/core';
import { ObjectService } from '@ferry/objects';
import { Redis, RedisKeys, RedisNonceStore } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { HashPool, UploadEngine } from '@ferry/uploads';
import { DataController } from './data.controller';
import { DocsController } from './docs.controller';
import { DockerflowController } from './dockerflow.controller';
import { ObjectController } from './object.controller';

/** object-api: the Taskcluster object service over Ferry's catalog, and its signed-URL data plane. */
@Module({})
export class ObjectApiModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: ObjectApiModule,
      imports: [FerryCoreModule.forApp('object-api', config), UploadsModule],
      controllers: [HealthController, DockerflowController, ObjectController, DataController, DocsController],
      providers: [
        {
          provide: RedisNonceStore,
          useFactory: (redis: Redis, keys: RedisKeys) => new RedisNonceStore(redis, keys),
          inject: [REDIS, RedisKeys],
        },
        {
          provide: ObjectService,
          useFactory: (sessions: SessionStore, engine: UploadEngine, storage: Storage, auth: Authenticator, pool: HashPool) => {
            if (!config.signingKey) throw new Error('object-api needs a signing key (FERRY_SIGNING_KEY)');
            return new ObjectService(sessions, engine, storage, auth, new UrlSigner(config.signingKey), pool, {
              urlTtlMs: config.signedUrlTtlMs,
              uploadLifetimeMs: config.objects.uploadLifetimeMs,
            });
          },
          inject: [SessionStore, UploadEngine, STORAGE, Authenticator, HashPool],
        },
      ],
    };
  }
}
