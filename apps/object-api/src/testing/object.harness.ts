import type { INestApplication } from '@nestjs/common';
import { FerryConfig, loadConfig } from '@ferry/config';
import { STORAGE } from '@ferry/core';
import type { Storage } from '@ferry/storage';
import { TempDir, TestRedis, freePort, startTestRedis, tempDir } from '@ferry/testing';
import { createObjectApi } from '../app/bootstrap';

export const OBJECT_CLIENTS = [
  { clientId: 'uploader', accessToken: 'uploader-token', scopes: ['object:upload:proj/*', 'object:download:*'] },
  { clientId: 'reader', accessToken: 'reader-token', scopes: ['object:download:*'] },
];

export interface ObjectHarness {
  config: FerryConfig;
  app: INestApplication;
  base: string;
  redis: TestRedis;
  data: TempDir;
  storage: Storage;
  close(): Promise<void>;
}

/** Boots the real object-api on a free port with a private Redis and data directory. */
export async function startObjectApi(env: Record<string, string> = {}): Promise<ObjectHarness> {
  const redis = await startTestRedis();
  const data = tempDir('ferry-object');
  const port = await freePort();
  const config = loadConfig(
    {
      FERRY_OBJECT_PORT: String(port),
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_LOG_LEVEL: 'silent',
      FERRY_CLIENTS: JSON.stringify(OBJECT_CLIENTS),
      FERRY_SIGNING_KEY: 'object-test-signing-key-0123456789',
      ...env,
    },
    ['signingKey'],
  );
  const app = await createObjectApi(config, false);
  await app.listen(port, '127.0.0.1');
  return {
    config,
    app,
    base: `http://127.0.0.1:${port}`,
    redis,
    data,
    storage: app.get<Storage>(STORAGE),
    close: async () => {
      await app.close();
      await redis.stop();
      data.remove();
    },
  };
}
