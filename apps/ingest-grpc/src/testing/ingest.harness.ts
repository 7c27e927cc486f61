import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FerryConfig, loadConfig } from '@ferry/config';
import type { ByteStreamClient, StorageClient } from '@ferry/protocol';
import { TempDir, TestRedis, byteStreamClient, startTestRedis, storageClient, tempDir } from '@ferry/testing';
import { GrpcServer } from '../app/grpc-server.service';
import { IngestModule } from '../app/ingest.module';

export interface IngestHarness {
  config: FerryConfig;
  app: INestApplicationContext;
  address: string;
  client: ByteStreamClient;
  /** google.storage.v2.Storage client on the same server. */
  storage: StorageClient;
  redis: TestRedis;
  data: TempDir;
  close(): Promise<void>;
}

/** Boots the real ingest-grpc module on a free port, with a private Redis and data directory. */
export async function startIngest(env: Record<string, string> = {}): Promise<IngestHarness> {
  const redis = await startTestRedis();
  const data = tempDir('ferry-ingest');
  const config = loadConfig({
    FERRY_GRPC_PORT: '0',
    FERRY_GRPC_METRICS_PORT: '0',
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: redis.prefix,
    FERRY_DATA_DIR: data.path,
    FERRY_LOG_LEVEL: 'silent',
    FERRY_LEASE_TTL_MS: '2000',
    ...env,
  });
  const app = await NestFactory.createApplicationContext(IngestModule.register(config), { logger: false });
  await app.init();
  const address = `127.0.0.1:${app.get(GrpcServer).port}`;
  const client = byteStreamClient(address);
  const storage = storageClient(address);
  return {
    config,
    app,
    address,
    client,
    storage,
    redis,
    data,
    close: async () => {
      client.close();
      storage.close();
      await app.close();
      await redis.stop();
      data.remove();
    },
  };
}
