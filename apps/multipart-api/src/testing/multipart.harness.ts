import type { INestApplication } from '@nestjs/common';
import { FerryConfig, loadConfig } from '@ferry/config';
import { STORAGE } from '@ferry/core';
import { AssemblyWorker, FileHandles, MultipartAssembler, MultipartStore } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { MultipartClient, TempDir, TestRedis, freePort, startTestRedis, tempDir } from '@ferry/testing';
import { HashPool } from '@ferry/uploads';
import { createMultipartApi } from '../app/bootstrap';

export const CLIENTS = [
  { clientId: 'alice', accessToken: 'alice-token', scopes: ['ferry:write:fileHandle/*'] },
  { clientId: 'bob', accessToken: 'bob-token-1', scopes: ['ferry:write:*'] },
  { clientId: 'carol', accessToken: 'carol-token', scopes: ['ferry:read:*'] },
];

export interface MultipartHarness {
  config: FerryConfig;
  app: INestApplication;
  base: string;
  redis: TestRedis;
  data: TempDir;
  storage: Storage;
  client(token: string): MultipartClient;
  /** Runs an assembly worker in this process (as the assembler-worker app does). */
  startWorker(): Promise<void>;
  stopWorker(): Promise<void>;
  close(): Promise<void>;
}

/** Boots the real multipart-api on a free port with a private Redis and data directory. */
export async function startMultipartApi(env: Record<string, string> = {}, withWorker = true): Promise<MultipartHarness> {
  const redis = await startTestRedis();
  const data = tempDir('ferry-multipart');
  const port = await freePort();
  const config = loadConfig(
    {
      FERRY_MULTIPART_PORT: String(port),
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_LOG_LEVEL: 'silent',
      FERRY_LEASE_TTL_MS: '2000',
      FERRY_CLIENTS: JSON.stringify(CLIENTS),
      FERRY_SIGNING_KEY: 'test-signing-key-0123456789abcdef',
      ...env,
    },
    ['signingKey'],
  );
  const app = await createMultipartApi(config, false);
  await app.listen(port, '127.0.0.1');
  const base = `http://127.0.0.1:${port}`;
  let worker: { worker: AssemblyWorker; connection: Redis } | undefined;
  const harness: MultipartHarness = {
    config,
    app,
    base,
    redis,
    data,
    storage: app.get<Storage>(STORAGE),
    client: (token) => new MultipartClient({ base, token }),
    startWorker: async () => {
      if (worker) return;
      const connection = createRedis(config.redis.url, 'worker');
      const assembler = new MultipartAssembler(app.get(MultipartStore), app.get(FileHandles), app.get<Storage>(STORAGE), app.get(HashPool));
      const w = new AssemblyWorker(connection, app.get(RedisKeys).bullPrefix(), assembler, { concurrency: 2, lockMs: config.worker.jobLockMs });
      worker = { worker: w, connection };
      await w.ready();
    },
    stopWorker: async () => {
      if (!worker) return;
      await worker.worker.close();
      await worker.connection.quit();
      worker = undefined;
    },
    close: async () => {
      await harness.stopWorker();
      await app.close();
      await redis.stop();
      data.remove();
    },
  };
  if (withWorker) await harness.startWorker();
  return harness;
}
