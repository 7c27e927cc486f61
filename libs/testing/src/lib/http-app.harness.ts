import type { INestApplication } from '@nestjs/common';
import { ConfigNeed, FerryConfig, loadConfig } from '@ferry/config';
import { freePort } from './ports';
import { TestRedis, startTestRedis } from './redis-server';
import { TempDir, tempDir } from './temp-dir';

export interface HttpAppHarness {
  config: FerryConfig;
  app: INestApplication;
  /** `http://127.0.0.1:<port>` */
  base: string;
  redis: TestRedis;
  data: TempDir;
  close(): Promise<void>;
}

export interface HttpAppHarnessOptions {
  /** The variable that sets the app's port (`FERRY_MULTIPART_PORT`...). */
  portVariable: string;
  /** Environment of the test (wins over the harness defaults: private Redis, temp data dir, silent logs). */
  env: Record<string, string>;
  needs?: ConfigNeed[];
  create(config: FerryConfig): Promise<INestApplication>;
}

/** Boots a real HTTP app on a free loopback port with its own Redis and data directory. */
export async function startHttpAppHarness(options: HttpAppHarnessOptions): Promise<HttpAppHarness> {
  const redis = await startTestRedis();
  const data = tempDir('ferry-app');
  const port = await freePort();
  const config = loadConfig(
    {
      [options.portVariable]: String(port),
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_LOG_LEVEL: 'silent',
      ...options.env,
    },
    options.needs,
  );
  const app = await options.create(config);
  await app.listen(port, '127.0.0.1');
  return {
    config,
    app,
    base: `http://127.0.0.1:${port}`,
    redis,
    data,
    close: async () => {
      await app.close();
      await redis.stop();
      data.remove();
    },
  };
}
