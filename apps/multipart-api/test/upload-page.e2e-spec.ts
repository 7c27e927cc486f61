/**
 * The built multipart-api serves the browser upload page: webpack copied its files beside main.js
 * and tus-js-client's browser build is found in node_modules from the bundle (the in-process
 * browser test, apps/multipart-api/src/app/upload-page.spec.ts, runs the sources instead).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TempDir, TestRedis, freePort, startBuiltApp, startTestRedis, stopProcess, tempDir, waitHttpReady } from '@ferry/testing';

const ASSETS = join(__dirname, '..', 'src', 'assets', 'upload');

describe('the built multipart-api serves the upload page', () => {
  let redis: TestRedis;
  let data: TempDir;

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-mp-upload-page');
  });

  afterAll(async () => {
    await redis.stop();
    data.remove();
  });

  it('answers /upload and its files as the sources hold them, and tus.min.js from the package', async () => {
    const port = await freePort();
    const api = startBuiltApp('multipart-api', {
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_MULTIPART_PORT: String(port),
      FERRY_LOG_LEVEL: 'warn',
    });
    try {
      await waitHttpReady(api, port);
      const base = `http://127.0.0.1:${port}`;
      const expected: [string, string, string][] = [
        ['/upload', 'text/html; charset=utf-8', readFileSync(join(ASSETS, 'index.html'), 'utf8')],
        ['/upload/upload.js', 'text/javascript; charset=utf-8', readFileSync(join(ASSETS, 'upload.js'), 'utf8')],
        ['/upload/upload.css', 'text/css; charset=utf-8', readFileSync(join(ASSETS, 'upload.css'), 'utf8')],
        ['/upload/tus.min.js', 'text/javascript; charset=utf-8', readFileSync(require.resolve('tus-js-client/dist/tus.min.js'), 'utf8')],
      ];
      for (const [path, type, body] of expected) {
        const r = await fetch(`${base}${path}`);
        expect([path, r.status, r.headers.get('content-type')]).toEqual([path, 200, type]);
        expect((await r.text()) === body).toBe(true);
      }
    } finally {
      await stopProcess(api);
    }
  });
});
