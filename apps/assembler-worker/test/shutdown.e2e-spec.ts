/**
 * The worker as users run it (node dist/apps/assembler-worker/main.js): it serves health, refuses a
 * bad configuration with exit code 2 and a message naming the variable, and on SIGTERM closes its
 * BullMQ worker and exits 0.
 */
import { TempDir, TestRedis, exitOf, freePort, startBuiltApp, startTestRedis, tempDir, waitHttpReady } from '@ferry/testing';

describe('assembler-worker process', () => {
  let redis: TestRedis;
  let data: TempDir;

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-worker-e2e');
  });

  afterAll(async () => {
    await redis.stop();
    data.remove();
  });

  it('serves health and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const child = startBuiltApp('assembler-worker', {
      FERRY_WORKER_PORT: String(port),
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
    });
    const exited = exitOf(child);
    await waitHttpReady(child, port);
    const started = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses a bad configuration, naming the variable', async () => {
    const child = startBuiltApp('assembler-worker', { FERRY_EXPIRE_INTERVAL_MS: '-5' });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await exitOf(child);
    expect(code).toBe(2);
    expect(stderr).toContain('FERRY_EXPIRE_INTERVAL_MS');
  });
});
