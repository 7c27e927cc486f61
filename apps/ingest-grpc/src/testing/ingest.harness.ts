import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FerryConfig, loadConfig } from '@ferry/config';
import { REDIS } from '@ferry/core';
import type { ByteStreamClient, StorageClient } from '@ferry/protocol';
import { Redis, RedisKeys } from '@ferry/redis';
import { TempDir, TestRedis, byteStreamClient, startTestRedis, storageClient, tempDir } from '@ferry/testing';
import { CacheHttpServer } from '../app/cache-http.server';
import { GrpcServer } from '../app/grpc-server.service';
import { IngestModule } from '../app/ingest.module';

/**
 * The writer lease TTL of the harness: long, so that no lease lapses during a test. A writer takes
 * its lease for lost 4/5 of the TTL after its last renewal: with a short TTL, an event-loop stall on a
 * busy machine would end a stream that the test expects to succeed with ABORTED. It is also longer
 * than any wait of a test (WAIT_MS, 30 s): a test that sees a lease go away knows it was released,
 * not expired.
 */
export const LEASE_TTL_MS = 120_000;

export interface IngestHarness {
  config: FerryConfig;
  app: INestApplicationContext;
  address: string;
  /** Base URL of the Bazel HTTP cache port (`https://` when TLS is configured). */
  httpCache: string;
  client: ByteStreamClient;
  /** google.storage.v2.Storage client on the same server. */
  storage: StorageClient;
  redis: TestRedis;
  data: TempDir;
  /** Whether a writer holds the lease of upload `uploadId` (its lease key exists in Redis). */
  leased(uploadId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Boots the real ingest-grpc module on a free port, with a private Redis and data directory. */
export async function startIngest(env: Record<string, string> = {}): Promise<IngestHarness> {
  const redis = await startTestRedis();
  const data = tempDir('ferry-ingest');
  const config = loadConfig({
    FERRY_GRPC_PORT: '0',
    FERRY_GRPC_METRICS_PORT: '0',
    FERRY_CACHE_HTTP_PORT: '0',
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: redis.prefix,
    FERRY_DATA_DIR: data.path,
    FERRY_LOG_LEVEL: 'silent',
    FERRY_LEASE_TTL_MS: String(LEASE_TTL_MS),
    ...env,
  });
  const app = await NestFactory.createApplicationContext(IngestModule.register(config), { logger: false });
  await app.init();
  const address = `127.0.0.1:${app.get(GrpcServer).port}`;
  const httpCache = `${config.grpc.tls ? 'https' : 'http'}://127.0.0.1:${app.get(CacheHttpServer).port}`;
  const client = byteStreamClient(address);
  const storage = storageClient(address);
  return {
    config,
    app,
    address,
    httpCache,
    client,
    storage,
    redis,
    data,
    leased: async (uploadId) => (await app.get<Redis>(REDIS).exists(app.get(RedisKeys).uploadLease(uploadId))) === 1,
    close: async () => {
      client.close();
      storage.close();
      await app.close();
      await redis.stop();
      data.remove();
    },
  };
}
