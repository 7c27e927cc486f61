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
