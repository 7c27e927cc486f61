import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '@ferry/testing';
import { FsStorage } from './fs-storage';
import { describeStorageConformance } from './storage.conformance';

describeStorageConformance(
  'fs',
  async () => {
    const dir = tempDir('ferry-fs');
    return {
      storage: new FsStorage(dir.path),
      reopen: () => new FsStorage(dir.path),
      storedBytes: async (uploadId) =>
        existsSync(join(dir.path, 'staging', uploadId)) ? statSync(join(dir.path, 'staging', uploadId)).size : 0,
      // its file closed, as the kernel does (its lock goes with it)
      writerDies: (file) => file.close(),
      cleanup: async () => dir.remove(),
    };
  },
  { parts: true },
);

describe('FsStorage layout', () => {
  it('keeps staging and blobs under the data directory', async () => {
    const dir = tempDir('ferry-fs');
    const storage = new FsStorage(dir.path);
    const f = await storage.openStaging('u1', 0);
    await f.write(Buffer.from('x'), 0);
    await f.close();
    expect(existsSync(join(dir.path, 'staging', 'u1'))).toBe(true);
    const digest = '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881';
    await storage.publishStaging('u1', digest);
    expect(existsSync(join(dir.path, 'blobs', 'sha256', '2d', digest))).toBe(true);
    dir.remove();
  });
});

describe('FsStorage.check', () => {
  it('passes when many checks run at once (each probes its own file; found by npm run fuzz: concurrent heartbeats said storage unavailable)', async () => {
    const dir = tempDir('ferry-fs');
    const storage = new FsStorage(dir.path);
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => storage.check()));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    dir.remove();
  });
});

/**
 * A writer that lost its lease without knowing it (its process paused past it) must not write once
 * its successor has begun: the staging bytes are locked for the writer that opened them (an open
 * file description lock, which the kernel drops when the file is closed or the process dies).
 */
describe('FsStorage staging locks', () => {
  const dir = tempDir('ferry-fs-locks');
  const storage = new FsStorage(dir.path, 300);
  afterAll(() => dir.remove());

  it('lets a second writer of an upload in only once the first closed, and cuts what the first wrote late', async () => {
    const first = await storage.openStaging('locked1', 0);
    await first.write(Buffer.from('committed'), 0);
    const second = storage.openStaging('locked1', 9);
    // the first, unaware its lease lapsed, still writes past what was committed, then closes
    await new Promise((resolve) => setTimeout(resolve, 50));
    await first.write(Buffer.from('-late bytes'), 9);
    await first.close();
    const successor = await second;
    expect(await storage.stagingSize('locked1')).toBe(9);
    await successor.write(Buffer.from('+new'), 9);
    await successor.close();
    expect(await readAll(storage, 'locked1')).toBe('committed+new');
  });

  it('answers UNAVAILABLE when the previous writer does not let go, and nothing is cut', async () => {
    const first = await storage.openStaging('locked2', 0);
    await first.write(Buffer.from('0123456789'), 0);
    const t0 = Date.now();
    await expect(storage.openStaging('locked2', 4)).rejects.toMatchObject({ name: 'UnavailableError' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await storage.stagingSize('locked2')).toBe(10);
    await first.close();
    await (await storage.openStaging('locked2', 4)).close();
  });

  it('locks only the range of a part: other parts are written meanwhile, the same part waits', async () => {
    const a = await storage.openStagingForParts('locked3', 20, { start: 0, end: 10 });
    const b = await storage.openStagingForParts('locked3', 20, { start: 10, end: 20 });
    await expect(storage.openStagingForParts('locked3', 20, { start: 5, end: 15 })).rejects.toMatchObject({ name: 'UnavailableError' });
    await a.close();
    await expect(storage.openStagingForParts('locked3', 20, { start: 5, end: 15 })).rejects.toMatchObject({ name: 'UnavailableError' });
    await b.close();
    await (await storage.openStagingForParts('locked3', 20, { start: 5, end: 15 })).close();
  });

  it('holds against a writer in another process that is stopped, and is free once that process dies', async () => {
    const file = join(dir.path, 'staging', 'locked4');
    await (await storage.openStaging('locked4', 0)).close();
    // another process opens and locks the staging file as a writer would, then is stopped (SIGSTOP)
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'); const m = { exports: {} }; process.dlopen(m, ${JSON.stringify(addonPath())});
         const fd = fs.openSync(${JSON.stringify(file)}, 'r+'); if (!m.exports.lock(fd, 0, 0)) process.exit(3);
         process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    child.kill('SIGSTOP');
    await expect(storage.openStaging('locked4', 0)).rejects.toMatchObject({ name: 'UnavailableError' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    await (await storage.openStaging('locked4', 0)).close();
  });
});

function addonPath(): string {
  const path = join(__dirname, '../../../native/build/ferry_native.node');
  if (!existsSync(path)) throw new Error(`${path} is not built (node tools/native/build.mjs)`);
  return path;
}

async function readAll(storage: FsStorage, uploadId: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of storage.readStaging(uploadId, 0, (await storage.stagingSize(uploadId)) ?? 0)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}
