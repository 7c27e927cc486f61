import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidArgumentError } from '@ferry/errors';
import { ZstdInflater, zstdAvailable, zstdCompress, zstdCompressor, zstdDecompress } from './zstd';

/** What the zstd command line makes of `data` (the reference encoder: frames Bazel's zstd-jni also writes). */
const cliCompress = (data: Buffer, ...args: string[]) => execFileSync('zstd', ['-q', '-c', ...args], { input: data, maxBuffer: 1 << 30 });
const cliDecompress = (data: Buffer) => execFileSync('zstd', ['-q', '-d', '-c'], { input: data, maxBuffer: 1 << 30 });

/** Decompresses `chunks` as the ByteStream face does, message by message. */
async function inflate(chunks: Buffer[], maxBytes: number): Promise<Buffer> {
  const inflater = new ZstdInflater(maxBytes);
  const out: Buffer[] = [];
  for (const chunk of chunks) for (const piece of inflater.pieces(chunk)) out.push(piece);
  inflater.end();
  return Buffer.concat(out);
}

/** `data` cut in pieces of `size` bytes (a stream's messages). */
const pieces = (data: Buffer, size: number) =>
  Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size));

describe('zstd (zstd-napi, checked against the zstd CLI)', () => {
  const data = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(5 << 20, 'ferry '), randomBytes(12345)]);

  it('is available where the addon was built (npm install builds it here)', () => {
    expect(zstdAvailable()).toBe(true);
  });

  it('decompresses what the CLI wrote, whole and as a stream cut anywhere, several frames too', async () => {
    const frame = cliCompress(data, '-3');
    expect(zstdDecompress(frame, data.length).equals(data)).toBe(true);
    for (const size of [1, 7, 64 * 1024, frame.length]) {
      // (tiny pieces over the first 64 KiB: headers and blocks split anywhere)
      const chunks = size < 64 ? [...pieces(frame.subarray(0, 65536), size), frame.subarray(65536)] : pieces(frame, size);
      expect((await inflate(chunks, data.length)).equals(data)).toBe(true);
    }
    const two = Buffer.concat([cliCompress(data.subarray(0, 1000)), cliCompress(data.subarray(1000))]);
    expect((await inflate(pieces(two, 65536), data.length)).equals(data)).toBe(true);
  });

  it('compresses to frames the CLI reads, the same bytes every time (a read resumes at a compressed offset)', async () => {
    const whole = zstdCompress(data);
    expect(cliDecompress(whole).equals(data)).toBe(true);
    const streamed: Buffer[] = [];
    await pipeline(Readable.from(pieces(data, 1 << 20)), zstdCompressor(), async (source: AsyncIterable<Buffer>) => {
      for await (const b of source) streamed.push(b);
    });
    const again = Buffer.concat(streamed);
    expect(cliDecompress(again).equals(data)).toBe(true);
    const twice: Buffer[] = [];
    await pipeline(Readable.from(pieces(data, 1 << 20)), zstdCompressor(), async (source: AsyncIterable<Buffer>) => {
      for await (const b of source) twice.push(b);
    });
    expect(Buffer.concat(twice).equals(again)).toBe(true);
    expect(again.length).toBeLessThan(data.length);
  });

  it('refuses a bad frame, a truncated one, and one that decompresses past the declared size, as INVALID_ARGUMENT', async () => {
    const frame = cliCompress(data);
    const garbage = randomBytes(1000);
    expect(() => zstdDecompress(garbage, data.length)).toThrow(InvalidArgumentError);
    await expect(inflate([garbage], data.length)).rejects.toBeInstanceOf(InvalidArgumentError);
    const truncated = frame.subarray(0, frame.length - 10);
    expect(() => zstdDecompress(truncated, data.length)).toThrow(/middle of a frame/);
    await expect(inflate(pieces(truncated, 65536), data.length)).rejects.toThrow(/middle of a frame/);
    // a 1 GiB bomb in a few KiB: stopped at the declared size, never allocated whole
    const bomb = cliCompress(Buffer.alloc(1 << 30), '-1');
    expect(bomb.length).toBeLessThan(100_000);
    expect(() => zstdDecompress(bomb, 1 << 20)).toThrow(/more than the 1048576 bytes/);
    await expect(inflate([bomb], 1 << 20)).rejects.toBeInstanceOf(InvalidArgumentError);
    // a corrupted byte in the middle: the frame's checksum (the CLI writes one) or its structure fails
    const corrupt = Buffer.from(frame);
    corrupt[corrupt.length >> 1] ^= 0xff;
    expect(() => zstdDecompress(corrupt, data.length)).toThrow(InvalidArgumentError);
  });
});
