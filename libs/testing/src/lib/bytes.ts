import { createHash, randomBytes } from 'node:crypto';

/** Deterministic pseudo-random bytes (xorshift), cheap enough for gigabytes. */
export function patternBytes(size: number, seed = 1): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  for (; i < size; i++) buf[i] = i & 0xff;
  return buf;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function randomName(prefix = 'obj'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}
