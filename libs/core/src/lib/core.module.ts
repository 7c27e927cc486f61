import {
  DynamicModule,
  Global,
  Inject,
  Injectable,
  Module,
  OnApplicationBootstrap,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { Catalog } from '@ferry/catalog';
import type { FerryConfig } from '@ferry/config';
import { Logger, createLogger } from '@ferry/logging';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { HashPool, UploadEngine } from '@ferry/uploads';
import { createStorage } from './storage.factory';
import { FERRY_CONFIG, LOGGER, REDIS, STORAGE } from './tokens';

/** Every app says so at boot when it runs in development mode. */
@Injectable()
class DevModeWarning implements OnApplicationBootstrap {
  constructor(
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.auth.devMode) {
      this.logger.warn('FERRY_CLIENTS is unset: development mode, one client "dev" with token "dev-secret" and scope "*", loopback only');
    }
  }
}

@Injectable()
class RedisLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** Boot waits (briefly) for Redis: a cluster connection refuses commands until it knows the slots. */
  async onModuleInit(): Promise<void> {
    await waitForRedis(this.redis, 10_000).catch((err: unknown) =>
      this.logger.warn({ err }, 'Redis not reachable yet; requests answer UNAVAILABLE meanwhile'),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    // quit() on a connection that is down would wait for the retries to run out
    if (this.redis.status !== 'ready') this.redis.disconnect();
    else await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * What every Ferry app shares: validated config, logger, Redis (command connection), storage,
 * upload sessions, the catalog and the authenticator. Global, so app modules only import it once.
 */
@Global()
@Module({})
export class FerryCoreModule {
  static forApp(app: string, config: FerryConfig): DynamicModule {
    return {
      module: FerryCoreModule,
      providers: [
        { provide: FERRY_CONFIG, useValue: config },
        { provide: LOGGER, useFactory: (): Logger => createLogger(app, config.logLevel) },
        { provide: RedisKeys, useFactory: () => new RedisKeys(config.redis.prefix) },
        { provide: REDIS, useFactory: () => createRedis(config.redis.url, 'command') },
        { provide: STORAGE, useFactory: () => createStorage(config) },
        {
          provide: SessionStore,
          useFactory: (redis: Redis, keys: RedisKeys) =>
            new SessionStore(redis, keys, { idleLifetimeMs: config.uploads.idleLifetimeMs, leaseTtlMs: config.uploads.leaseTtlMs }),
          inject: [REDIS, RedisKeys],
        },
        { provide: Catalog, useFactory: (redis: Redis, keys: RedisKeys) => new Catalog(redis, keys), inject: [REDIS, RedisKeys] },
        { provide: Authenticator, useFactory: () => new Authenticator(config.auth.clients, config.auth.anonymousScopes) },
        RedisLifecycle,
        DevModeWarning,
      ],
      exports: [FERRY_CONFIG, LOGGER, RedisKeys, REDIS, STORAGE, SessionStore, Catalog, Authenticator],
    };
  }
}

@Injectable()
class HashPoolLifecycle implements OnApplicationShutdown {
  constructor(@Inject(HashPool) private readonly pool: HashPool) {}

  async onApplicationShutdown(): Promise<void> {
    await this.pool.close();
  }
}

/** The upload engine (and its hashing threads), for apps that receive uploads. */
@Module({
  providers: [
    { provide: HashPool, useFactory: () => new HashPool() },
    HashPoolLifecycle,
    {
      provide: UploadEngine,
      useFactory: (config: FerryConfig, sessions: SessionStore, storage: Storage, catalog: Catalog, pool: HashPool) =>
        new UploadEngine(sessions, storage, catalog, pool, {
          fsyncBytes: config.uploads.fsyncBytes,
          fsyncIntervalMs: config.uploads.fsyncIntervalMs,
        }),
      inject: [FERRY_CONFIG, SessionStore, STORAGE, Catalog, HashPool],
    },
  ],
  exports: [UploadEngine, HashPool],
})
export class UploadsModule {}
