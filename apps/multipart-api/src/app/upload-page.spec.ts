import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Browser, type Page, chromium } from 'playwright-core';
import { UploadEngine } from '@ferry/uploads';
import { type TempDir, sha256Hex, tempDir, waitFor } from '@ferry/testing';
import { MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const MiB = 1024 * 1024;
const TOKEN = 'bob-token-1'; // ferry:write:* (the harness's clients)
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const REPO = resolve(__dirname, '../../../..');
const SCREENSHOT = join(REPO, 'tmp', 'artifacts', 'upload-page.png');
/** The file's size and how fast the browser may send it before the reload (Chromium's network emulation). */
const SIZE = 32 * MiB;
const THROTTLED_BYTES_PER_S = 2 * MiB;

/** Chromium, or a failure that says how to get it: this test is never skipped silently. */
async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}: the upload page's browser test needs it. ` +
        'Install it with `sudo apt-get install chromium` (Debian/Ubuntu; .ci/run does), or set CHROMIUM_PATH to a Chromium or Chrome binary.',
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}

/** The browser's localStorage, as the page sees it (the tests compile without the DOM's types). */
interface WebStorage {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
}

/** Upload URLs tus-js-client keeps in the page's localStorage. */
function storedUploadUrls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const storage = (globalThis as unknown as { localStorage: WebStorage }).localStorage;
    const urls: string[] = [];
    for (let i = 0; i < storage.length; i++) {
      const key = storage.key(i) ?? '';
      if (key.startsWith('tus::')) urls.push((JSON.parse(storage.getItem(key) ?? '{}') as { uploadUrl?: string }).uploadUrl ?? '');
    }
    return urls;
  });
}

describe('the browser upload page at /upload (headless Chromium, tus-js-client, HTTP, Redis, disk)', () => {
  let h: MultipartHarness;
  let browser: Browser | undefined;
  let dir: TempDir;

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_TUS_MAX_SIZE: String(64 * MiB) }, false);
    dir = tempDir('ferry-upload-page');
  });

  afterAll(async () => {
    await browser?.close();
    await h?.close();
    dir?.remove();
  });

  it('uploads a file, resumes it after a reload mid-way at the offset the server kept, and links to the finished object', async () => {
    const data = randomBytes(SIZE);
    const file = join(dir.path, 'big-file.bin');
    writeFileSync(file, data);
    browser = await launchChromium();
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1000, height: 720 } });
    const page = await context.newPage();
    const failures: string[] = [];
    page.on('pageerror', (err) => failures.push(String(err)));
    page.on('console', (msg) => {
      if (msg.type() === 'error') failures.push(`${msg.text()} (${msg.location().url})`);
    });
    page.on('response', (res) => {
      if (res.status() >= 400) failures.push(`${res.request().method()} ${res.url()}: ${res.status()}`);
    });
    // 1 MiB PATCHes: the offset the server keeps moves on while the browser sends
    await page.goto(`${h.base}/upload?chunkSize=${MiB}`);
    await page.fill('#token', TOKEN);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: THROTTLED_BYTES_PER_S,
    });

    await page.setInputFiles('#file', file);
    const row = page.locator('li.upload').first();
    const sent = async () => Number((await row.getAttribute('data-sent')) ?? 0);
    // Pause: nothing more is sent (the server's offset stands still); Resume goes on from there
    await waitFor('the first upload to pass 10%', async () => (await sent()) >= SIZE / 10, { timeoutMs: 60_000 });
    await row.getByRole('button', { name: 'Pause big-file.bin' }).click();
    await row.locator('.state', { hasText: /^Paused at / }).waitFor({ timeout: 10_000 });
    const pausedAt = await sent();
    const [pausedUrl] = await storedUploadUrls(page);
    const offset = async (url: string) =>
      Number(
        (await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${TOKEN}` } })).headers.get(
          'upload-offset',
        ),
      );
    const offsetPaused = await offset(pausedUrl);
    await new Promise((r) => setTimeout(r, 700));
    expect([await sent(), await offset(pausedUrl), await row.getAttribute('data-state')]).toEqual([pausedAt, offsetPaused, 'paused']);
    expect(pausedAt).toBeLessThan(SIZE / 4);
    await row.getByRole('button', { name: 'Resume big-file.bin' }).click();
    await waitFor('the first upload to pass 25%', async () => Number((await row.getAttribute('data-sent')) ?? 0) >= SIZE / 4, {
      timeoutMs: 60_000,
    });
    const sentBeforeReload = await sent();
    expect(sentBeforeReload).toBeLessThan(SIZE * 0.8); // interrupted mid-way, not at the end
    const [uploadUrl] = await storedUploadUrls(page);
    expect(uploadUrl).toMatch(new RegExp(`^${h.base}/files/[A-Za-z0-9_-]{22}$`));

    await page.reload(); // the PATCH in flight is cut; the server keeps what arrived
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    expect(uploadUrl).toBe(pausedUrl); // paused and resumed: the same upload
    const kept = await offset(uploadUrl);
    expect([kept > offsetPaused, kept < SIZE]).toEqual([true, true]);
    expect(await page.inputValue('#token')).toBe(TOKEN); // kept in localStorage
    expect(await storedUploadUrls(page)).toEqual([uploadUrl]);

    await page.setInputFiles('#file', file); // the same file again: the page finds its earlier upload
    const resumed = page.locator('li.upload .resumed');
    await resumed.waitFor({ state: 'visible', timeout: 30_000 });
    const resumedAt = Number(/Resuming at (\d+) bytes/.exec((await resumed.textContent()) ?? '')?.[1] ?? -1);
    expect(resumedAt).toBe(kept);

    await page.locator('li.upload[data-state="finished"] a.download').waitFor({ timeout: 120_000 });
    const status = await page.locator('li.upload .state').textContent();
    const id = uploadUrl.split('/').pop() ?? '';
    expect(status).toContain(`tus/${id}`); // the same upload, continued
    expect(await page.locator('li.upload .stats').textContent()).toMatch(/^32\.0 MiB of 32\.0 MiB \(100\.0%\)/);
    mkdirSync(join(REPO, 'tmp', 'artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    process.stdout.write(`upload page screenshot: ${SCREENSHOT}\n`);

    // follow the link as a user would: the browser downloads the object through its signed URL
    const link = page.locator('li.upload a.download');
    expect(await link.getAttribute('href')).toMatch(new RegExp(`^${h.base}/files/${id}\\?X-Ferry-Expires=`));
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const saved = join(dir.path, 'downloaded.bin');
    await download.saveAs(saved);
    expect(download.suggestedFilename()).toBe('big-file.bin');
    expect(sha256Hex(readFileSync(saved))).toBe(sha256Hex(data));
    const object = await h.app.get(UploadEngine).object(`tus/${id}`);
    expect([object?.size, object?.sha256, object?.metadata?.['filename']]).toEqual([SIZE, sha256Hex(data), 'big-file.bin']);
    // finished: forgotten by tus-js-client (removeFingerprintOnSuccess), so a new choice starts anew
    expect(await storedUploadUrls(page)).toEqual([]);
    expect(failures).toEqual([]);
    await context.close();
  }, 180_000);

  it('goes on by itself after the connection is lost for a while, in the same upload', async () => {
    browser ??= await launchChromium();
    const data = randomBytes(8 * MiB);
    const file = join(dir.path, 'offline.bin');
    writeFileSync(file, data);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${h.base}/upload?chunkSize=${MiB}`);
    await page.fill('#token', TOKEN);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const network = (offline: boolean) =>
      cdp.send('Network.emulateNetworkConditions', {
        offline,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: THROTTLED_BYTES_PER_S,
      });
    await network(false);
    await page.setInputFiles('#file', file);
    const row = page.locator('li.upload').first();
    await waitFor('the upload to pass 25%', async () => Number((await row.getAttribute('data-sent')) ?? 0) >= data.length / 4, {
      timeoutMs: 60_000,
    });
    const [uploadUrl] = await storedUploadUrls(page);
    await network(true);
    await row.locator('.state', { hasText: /Connection trouble|Stopped/ }).waitFor({ timeout: 20_000 });
    expect(await page.locator('#notice').textContent()).toMatch(/^Offline/);
    await network(false);
    await page.locator('li.upload[data-state="finished"] a.download').waitFor({ timeout: 60_000 });
    expect(await row.locator('.state').textContent()).toContain(`tus/${uploadUrl.split('/').pop()}`);
    const r = await fetch((await row.locator('a.download').getAttribute('href')) ?? '');
    expect(sha256Hex(Buffer.from(await r.arrayBuffer()))).toBe(sha256Hex(data));
    await context.close();
  }, 120_000);

  it('takes several dropped files, asks for a token the server refused, and resumes them once it is entered', async () => {
    browser ??= await launchChromium();
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${h.base}/upload`);
    const files = [
      { name: 'notes.txt', type: 'text/plain', text: 'hello from a dropped file\n'.repeat(1000) },
      { name: 'data.json', type: 'application/json', text: JSON.stringify({ dropped: true, n: 2 }) },
    ];
    // what a drag and drop from the desktop hands the page (the tests compile without the DOM's types)
    const dataTransfer = await page.evaluateHandle((list) => {
      const g = globalThis as unknown as {
        DataTransfer: new () => { items: { add(file: unknown): void } };
        File: new (parts: string[], name: string, options: { type: string }) => unknown;
      };
      const transfer = new g.DataTransfer();
      for (const f of list) transfer.items.add(new g.File([f.text], f.name, { type: f.type }));
      return transfer;
    }, files);
    await page.locator('#drop').dispatchEvent('drop', { dataTransfer }); // no token yet
    expect(await page.locator('#notice').textContent()).toMatch(/^No token: the server may refuse the uploads \(401\)/);
    const rows = page.locator('li.upload');
    await waitFor('both uploads to be refused', async () => (await page.locator('li.upload[data-state="error"]').count()) === 2);
    expect(await rows.first().locator('.state').textContent()).toMatch(/refused the token \(401\)/);
    await page.fill('#token', TOKEN);
    for (const f of files) await page.getByRole('button', { name: `Resume ${f.name}` }).click();
    await waitFor('both uploads to finish with a link', async () => (await page.locator('li.upload a.download').count()) === 2, {
      timeoutMs: 30_000,
    });
    for (const [i, f] of files.entries()) {
      const row = rows.nth(i);
      expect(await row.locator('.name').textContent()).toBe(f.name);
      const r = await fetch((await row.locator('a.download').getAttribute('href')) ?? '');
      expect([r.status, r.headers.get('content-type'), r.headers.get('content-disposition'), await r.text()]).toEqual([
        200,
        f.type,
        `attachment; filename*=UTF-8''${f.name}`,
        f.text,
      ]);
    }
    await context.close();
  }, 60_000);

  it('serves the page with a strict Content-Security-Policy, its own files only, and tus-js-client from the package', async () => {
    const r = await fetch(`${h.base}/upload`);
    expect([r.status, r.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
    expect(r.headers.get('content-security-policy')).toMatch(/script-src 'self'; .*connect-src 'self'/);
    const html = await r.text();
    expect(html).not.toMatch(/<script>|<script [^>]*>[^<]/); // no inline script
    expect(html).not.toMatch(/https?:\/\//); // nothing from elsewhere: works offline
    const tus = await fetch(`${h.base}/upload/tus.min.js`);
    expect([tus.status, tus.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
    expect(await tus.text()).toBe(readFileSync(require.resolve('tus-js-client/dist/tus.min.js'), 'utf8'));
    for (const name of ['../upload-page.controller.ts', 'index.html', '..%2Fmain.ts', 'tus.js']) {
      const other = await fetch(`${h.base}/upload/${name}`);
      expect([name, other.status]).toEqual([name, 404]);
    }
  });
});
