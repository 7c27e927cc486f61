import { createHash, randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { crc32c } from '@node-rs/crc32';
import { HashPool, InlineHasher, crc32cHex } from './hashing';
import { nativeStates } from './resumable-hash';

describe('hashing', () => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const expected = {
    sha256: createHash('sha256').update(data).digest('hex'),
    md5: createHash('md5').update(data).digest('hex'),
    crc32c: crc32cHex(crc32c(data)),
  };

  it('InlineHasher digests a stream fed in pieces', async () => {
    const h = new InlineHasher(['md5', 'crc32c']);
    for (let i = 0; i < data.length; i += 100_000) h.update(data.subarray(i, i + 100_000));
    expect(await h.digest()).toEqual(expected);
  });

  it('computes sha256 always and the other digests only when needed', async () => {
    const alone = new InlineHasher();
    alone.update(data);
    expect(await alone.digest()).toEqual({ sha256: expected.sha256 });
    const pool = new HashPool(1);
    try {
      const h = pool.hasher(['crc32c', 'sha256']);
      await h.update(Buffer.from(data));
      expect(await h.digest()).toEqual({ sha256: expected.sha256, crc32c: expected.crc32c });
    } finally {
      await pool.close();
    }
  });

  it('HashPool gives the same digests, for shared slices and exclusive buffers alike, with many streams at once', async () => {
    const pool = new HashPool(2, 256 * 1024);
    try {
      const digests = await Promise.all(
        Array.from({ length: 4 }, async (_, k) => {
          const h = pool.hasher(['md5', 'crc32c']);
          for (let i = 0; i < data.length; i += 200_000) {
            // alternate slices of the shared buffer (copied) and buffers of their own (transferred)
            const piece = k % 2 ? Buffer.from(data.subarray(i, i + 200_000)) : data.subarray(i, i + 200_000);
            await h.update(piece);
          }
          return h.digest();
        }),
      );
      for (const d of digests) expect(d).toEqual(expected);
      expect(data.length).toBe(3 * 1024 * 1024 + 17); // the shared buffer was copied, never detached
    } finally {
      await pool.close();
    }
  });

  it('HashPool digests chunks larger than its cache slice, sha512 included', async () => {
    const pool = new HashPool(1);
    try {
      const h = pool.hasher(['crc32c', 'md5', 'sha512']);
      // 2 MiB + 1 (four slices and a byte), then the rest
      await h.update(Buffer.from(data.subarray(0, 2 * 1024 * 1024 + 1)));
      await h.update(Buffer.from(data.subarray(2 * 1024 * 1024 + 1)));
      expect(await h.digest()).toEqual({ ...expected, sha512: createHash('sha512').update(data).digest('hex') });
    } finally {
      await pool.close();
    }
  });

  it('HashPool saves the states of resumable digests and continues them in another stream; others cannot be saved', async () => {
    const native = nativeStates();
    if (!native) return; // (no native addon: nothing is resumable on a pool thread)
    const pool = new HashPool(2);
    try {
      const cut = 1024 * 1024 + 5;
      const first = pool.offloaded(['sha256', 'md5', 'crc32c'], { addonPath: native.addonPath });
      await first.update(Buffer.from(data.subarray(0, cut)));
      const states = await first.save();
      expect(Object.keys(states ?? {}).sort()).toEqual(['crc32c', 'md5', 'sha256']);
      expect(typeof states?.crc32c).toBe('number');
      // the first goes on; the second, on another thread, continues from the states
      await first.update(Buffer.from(data.subarray(cut)));
      const second = pool.offloaded(['sha256', 'md5', 'crc32c'], { addonPath: native.addonPath, from: states });
      await second.update(Buffer.from(data.subarray(cut)));
      expect(await second.digest()).toEqual(expected);
      expect(await first.digest()).toEqual(expected);
      const plain = pool.offloaded(['md5']);
      await plain.update(Buffer.from(data.subarray(0, 100)));
      expect(await plain.save()).toBeUndefined();
      plain.dispose();
    } finally {
      await pool.close();
    }
  });

  it('HashPool computes md5 alone, and a finished hasher refuses more bytes', async () => {
    const pool = new HashPool(1);
    try {
      const h = pool.offloaded(['md5']);
      for (let i = 0; i < data.length; i += 1_000_000) await h.update(Buffer.from(data.subarray(i, i + 1_000_000)));
      expect((await h.digest()).md5).toBe(expected.md5);
      await expect(h.update(Buffer.from('x'))).rejects.toThrow(/already finished/);
    } finally {
      await pool.close();
    }
  });

  it('wakes an update waiting for backpressure when the hasher is disposed', async () => {
    const pool = new HashPool(1, 64 * 1024);
    try {
      const busy = pool.offloaded(['md5']);
      const h = pool.offloaded(['md5']);
      // keep the only thread busy so acks come late, then overrun the backpressure limit
      const hog = Promise.all(Array.from({ length: 8 }, async () => busy.update(Buffer.alloc(1024 * 1024))));
      const waiting = (async () => h.update(Buffer.alloc(1024 * 1024)))();
      h.dispose();
      await expect(waiting).rejects.toThrow(/cancelled/);
      await hog.catch(() => undefined);
      busy.dispose();
    } finally {
      await pool.close();
    }
  });

  it('HashPool frees the chunks it was handed as it goes, not tens of MiB later', async () => {
    // Transferred chunks stay on this thread's ArrayBuffer account until the hashing thread
    // collects them. 64 MiB in 1 MiB chunks; what is still held after each one stays under the
    // thread's collection interval plus its backpressure window (4 + 4 MiB), with slack.
    // V8 frees the buffers a collection found dead on a background thread, which a busy machine runs
    // late (by the next collection at most): up to 4 MiB more, measured. That lag is V8's, not the
    // pool's: the test has V8 free them during the collection (V8 flags are per process, so the
    // hashing thread's heap too), and measures the pool's own bound.
    setFlagsFromString('--no-concurrent-array-buffer-sweeping');
    const pool = new HashPool(1, 4 * 1024 * 1024);
    try {
      const h = pool.offloaded(['crc32c']);
      const before = process.memoryUsage().arrayBuffers;
      let peak = 0;
      for (let i = 0; i < 64; i++) {
        await h.update(Buffer.alloc(1024 * 1024, i));
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
      }
      await h.digest();
      expect(peak).toBeLessThan(12 * 1024 * 1024);
    } finally {
      await pool.close();
      setFlagsFromString('--concurrent-array-buffer-sweeping');
    }
  });

  it('crc32c is the Castagnoli CRC (check value of "123456789")', () => {
    expect(crc32cHex(crc32c(Buffer.from('123456789')))).toBe('e3069283');
  });
});
