import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FerryConfig, loadConfig } from '@ferry/config';
import { STORAGE } from '@ferry/core';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { TempDir, TestRedis, freePort, startTestRedis, tempDir } from '@ferry/testing';
import { WorkerModule } from './worker.module';

describe('assembler-worker (real Redis, disk and HTTP)', () => {
  let redis: TestRedis;
  let data: TempDir;
  let config: FerryConfig;
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-worker');
    const port = await freePort();
    config = loadConfig({
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_WORKER_PORT: String(port),
      FERRY_EXPIRE_INTERVAL_MS: '200',
      FERRY_UPLOAD_IDLE_TTL_MS: '600',
      FERRY_LOG_LEVEL: 'silent',
    });
    app = await NestFactory.create(WorkerModule.register(config), { logger: false });
    await app.listen(port, '127.0.0.1');
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await app.close();
    await redis.stop();
    data.remove();
  });

  it('serves liveness, readiness and Prometheus metrics', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok', redis: 'ok', storage: 'ok' });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('ferry_uploads_expired_total');
    expect(metrics).toContain('ferry_process_cpu_seconds_total');
  });

  it('removes an idle upload and its staged bytes on schedule, but not an active one', async () => {
    const sessions = app.get(SessionStore);
    const storage = app.get<Storage>(STORAGE);
    for (const id of ['idle', 'busy']) {
      await sessions.getOrCreate({ id, name: id, protocol: 'test', owner: 'dev' });
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('partial'), 0);
      await f.close();
    }
    const lease = await sessions.acquireLease('busy');
    const renew = setInterval(() => void sessions.renewLease(lease), 300);
    const deadline = Date.now() + 10_000;
    while ((await sessions.exists('idle')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    clearInterval(renew);
    expect(await sessions.exists('idle')).toBe(false);
    expect(await storage.stagingSize('idle')).toBeUndefined();
    expect(await sessions.exists('busy')).toBe(true);
    expect(await storage.stagingSize('busy')).toBe(7);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_uploads_expired_total [1-9]/);
    await sessions.releaseLease(lease);
  });
});
