/**
 * The worker as users run it (node dist/apps/assembler-worker/main.js): it serves health, refuses a
 * bad configuration with exit code 2 and a message naming the variable, and on SIGTERM closes its
 * BullMQ worker and exits 0.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { TempDir, TestRedis, freePort, startTestRedis, tempDir } from '@ferry/testing';

const MAIN = join(__dirname, '..', '..', '..', 'dist', 'apps', 'assembler-worker', 'main.js');

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
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, FERRY_WORKER_PORT: String(port), REDIS_URL: redis.url, FERRY_REDIS_PREFIX: redis.prefix, FERRY_DATA_DIR: data.path },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let healthy = false;
    for (let i = 0; i < 100 && !healthy; i++) {
      healthy = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
      if (!healthy) await new Promise((r) => setTimeout(r, 100));
    }
    expect(healthy).toBe(true);
    const started = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses a bad configuration, naming the variable', async () => {
    const child = spawn(process.execPath, [MAIN], { env: { ...process.env, FERRY_EXPIRE_INTERVAL_MS: '-5' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toContain('FERRY_EXPIRE_INTERVAL_MS');
  });
});
