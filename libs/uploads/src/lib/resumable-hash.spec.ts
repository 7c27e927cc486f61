import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { type ResumableAlgorithm, UnloadableStateError, nativeStates, resumableHashing } from './resumable-hash';

const data = randomBytes(5 * 1024 * 1024 + 77);
const expected = (alg: ResumableAlgorithm, bytes: Buffer) => createHash(alg).update(bytes).digest('hex');

describe.each(['openssl', 'wasm'] as const)('resumable hashing (%s)', (backend) => {
  const hashing = resumableHashing(backend);

  it('is the backend asked for', () => {
    expect(hashing.backend).toBe(backend);
  });

  it.each(['md5', 'sha256'] as const)(
    '%s: continues from a saved state in another hasher, and equals the digest of the whole',
    async (alg) => {
      const first = await hashing.start(alg);
      expect(first.hex()).toBe(expected(alg, Buffer.alloc(0)));
      // uneven cuts: states saved in the middle of a 64-byte block
      await first.update([data.subarray(0, 1000), data.subarray(1000, 1_000_003)]);
      const saved = first.save();
      expect(saved.length).toBeLessThan(400);
      expect(first.hex()).toBe(expected(alg, data.subarray(0, 1_000_003)));
      const second = await hashing.load(saved);
      expect(second.algorithm).toBe(alg);
      await second.update([data.subarray(1_000_003)]);
      expect(second.hex()).toBe(expected(alg, data));
      // hex() leaves the digest going on; the first hasher was not changed by the second
      await first.update([data.subarray(1_000_003)]);
      expect(first.hex()).toBe(expected(alg, data));
    },
  );

  it('hashes on the calling thread at once (updateSync), as update does, and refuses it while an update runs', async () => {
    const digest = await hashing.start('sha256');
    for (let at = 0; at < 1_000_000; at += 65_536) digest.updateSync(data.subarray(at, Math.min(at + 65_536, 1_000_000)));
    expect(digest.hex()).toBe(expected('sha256', data.subarray(0, 1_000_000)));
    const running = digest.update([data.subarray(1_000_000, 2_000_000)]);
    expect(() => digest.updateSync(data.subarray(2_000_000, 2_000_001))).toThrow(/while an update runs/);
    await running;
    digest.updateSync(data.subarray(2_000_000));
    expect(digest.hex()).toBe(expected('sha256', data));
  });

  it('runs updates of one digest in order, however they are called', async () => {
    const digest = await hashing.start('sha256');
    await Promise.all([0, 1, 2, 3, 4].map((i) => digest.update([data.subarray(i * 1_000_000, (i + 1) * 1_000_000)])));
    expect(digest.hex()).toBe(expected('sha256', data.subarray(0, 5_000_000)));
  });

  it('refuses what is not one of its states with UnloadableStateError', async () => {
    const other = resumableHashing(backend === 'wasm' ? 'openssl' : 'wasm');
    const foreign = await other.start('md5');
    await foreign.update([data.subarray(0, 100)]);
    for (const saved of [foreign.save(), 'garbage', '', `${(await hashing.start('md5')).save().split('.')[0]}.AAAA`]) {
      await expect(hashing.load(saved)).rejects.toBeInstanceOf(UnloadableStateError);
    }
  });
});

describe('native states (for hashing threads)', () => {
  const native = nativeStates();

  (native ? it : it.skip)('are the bytes of the states that save and load exchange, and nothing else loads', async () => {
    const states = native as NonNullable<typeof native>;
    const digest = states.startNow('md5');
    digest.updateSync(data.subarray(0, 1000));
    const bytes = states.bytesOf(digest);
    const back = states.fromBytes(bytes);
    expect(back.algorithm).toBe('md5');
    expect(back.save()).toBe(digest.save());
    expect(() => states.fromBytes(bytes.subarray(1))).toThrow(UnloadableStateError);
    expect(() => states.bytesOf({ ...digest })).toThrow();
  });
});

describe('resumable hashing of this process', () => {
  it('is the native addon wherever a C compiler could build it (npm install does)', () => {
    // a silent fallback to wasm would cost 4x on sha256; without a compiler it is the documented fallback
    const compiler = spawnSync(process.env['CC'] || 'cc', ['--version']).status === 0;
    expect(resumableHashing().backend).toBe(compiler ? 'openssl' : 'wasm');
  });
});
