import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, OutOfRangeError } from '@ferry/errors';

/** tus 1.0.0 (tus.io/protocols/resumable-upload): the facts Ferry's tus face relies on (docs/protocols.md). */
export const TUS_VERSION = '1.0.0';
export const TUS_EXTENSIONS = [
  'creation',
  'creation-with-upload',
  'creation-defer-length',
  'expiration',
  'checksum',
  'termination',
  'concatenation',
];
export const TUS_CHECKSUM_ALGORITHMS = ['sha1', 'md5', 'crc32', 'sha256'] as const;
export type TusChecksumAlgorithm = (typeof TUS_CHECKSUM_ALGORITHMS)[number];
/** The only body type a PATCH (and a creation-with-upload POST) may carry. */
export const TUS_CONTENT_TYPE = 'application/offset+octet-stream';

/** `Tus-Resumable` absent or another version: 412 with `Tus-Version`. */
export class TusVersionError extends FailedPreconditionError {
  readonly httpStatus = 412;
}
/** A PATCH body that is not `application/offset+octet-stream`: 415. */
export class UnsupportedMediaTypeError extends InvalidArgumentError {
  readonly httpStatus = 415;
}
/** Over `Tus-Max-Size` or past `Upload-Length`: 413. */
export class UploadTooLargeError extends OutOfRangeError {
  readonly httpStatus = 413;
}
/** `Upload-Checksum` does not match the chunk: 460 (checksum extension); the chunk is discarded. */
export class ChecksumMismatchError extends InvalidArgumentError {
  readonly httpStatus = 460;
}
/** `Upload-Offset` is not the upload's offset: 409. */
export class OffsetMismatchError extends FailedPreconditionError {
  readonly httpStatus = 409;
}

/**
 * A partial upload a final upload concatenates vanished (expired or terminated) before its bytes
 * were copied: the final upload can never be completed and is dropped with it. 410 Gone.
 */
export class PartialUploadGoneError extends NotFoundError {
  readonly httpStatus = 410;
}

/** The HTTP status tus gives a typed error where it differs from Ferry's status table, else undefined. */
export function tusHttpStatus(err: unknown): number | undefined {
  if (
    err instanceof TusVersionError ||
    err instanceof UnsupportedMediaTypeError ||
    err instanceof UploadTooLargeError ||
    err instanceof ChecksumMismatchError ||
    err instanceof OffsetMismatchError ||
    err instanceof PartialUploadGoneError
  ) {
    return err.httpStatus;
  }
  return undefined;
}

export function checkTusResumable(value: string | undefined): void {
  if (value !== TUS_VERSION) {
    throw new TusVersionError(`Tus-Resumable must be ${TUS_VERSION} (got ${value === undefined ? 'none' : JSON.stringify(value)})`);
  }
}

/** A non-negative integer header (Upload-Offset, Upload-Length), or undefined when absent. */
export function parseSize(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  }
  return Number(value);
}

/**
 * `Upload-Metadata`: comma-separated `key[ base64value]` pairs, keys unique, non-empty, without
 * spaces or commas. Values are decoded as UTF-8. InvalidArgumentError (400) when malformed.
 */
export function parseMetadata(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (header === undefined || header.trim() === '') return out;
  for (const pair of header.split(',')) {
    const parts = pair.trim().split(' ');
    if (parts.length > 2 || parts[0] === '' || !/^[\x21-\x7e]+$/.test(parts[0])) {
      throw new InvalidArgumentError(`Upload-Metadata: malformed pair ${JSON.stringify(pair)}`);
    }
    const [key, value = ''] = parts;
    if (key in out) throw new InvalidArgumentError(`Upload-Metadata: key ${JSON.stringify(key)} repeated`);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
      throw new InvalidArgumentError(`Upload-Metadata: the value of ${JSON.stringify(key)} is not base64`);
    }
    out[key] = Buffer.from(value, 'base64').toString('utf8');
  }
  return out;
}

/** `Upload-Concat` on a creation request (concatenation extension). */
export type UploadConcat =
  | { kind: 'partial' }
  /** `urls`: as the client gave them (HEAD answers them back); `ids`: the upload each names, in order. */
  | { kind: 'final'; urls: string[]; ids: string[] };

/** The id of the upload a URL names: absolute or a path, ending in `/files/<id>` (the host is not checked). */
const UPLOAD_PATH = /\/files\/([A-Za-z0-9_-]{22})$/;

/**
 * `Upload-Concat: partial` or `Upload-Concat: final;<url> <url> ...` (space-separated upload URLs,
 * absolute or paths), or undefined when absent. InvalidArgumentError (400) when malformed.
 */
export function parseConcat(header: string | undefined): UploadConcat | undefined {
  if (header === undefined) return undefined;
  const value = header.trim();
  if (value === 'partial') return { kind: 'partial' };
  if (!value.startsWith('final;')) throw new InvalidArgumentError('Upload-Concat must be "partial" or "final;<url> <url> ..."');
  const urls = value
    .slice('final;'.length)
    .trim()
    .split(/ +/)
    .filter((u) => u !== '');
  if (urls.length === 0) throw new InvalidArgumentError('Upload-Concat: final names no partial upload');
  const ids = urls.map((url) => {
    let path: string;
    try {
      path = new URL(url, 'http://localhost').pathname;
    } catch {
      throw new InvalidArgumentError(`Upload-Concat: ${JSON.stringify(url)} is not a URL`);
    }
    const m = UPLOAD_PATH.exec(path);
    if (!m) throw new InvalidArgumentError(`Upload-Concat: ${JSON.stringify(url)} names no upload (.../files/<id>)`);
    return m[1];
  });
  return { kind: 'final', urls, ids };
}

/** A chunk's declared checksum (`Upload-Checksum: <algo> <base64>`). */
export interface ChunkChecksum {
  algorithm: TusChecksumAlgorithm;
  expected: Buffer;
}

export function parseChecksum(header: string | undefined): ChunkChecksum | undefined {
  if (header === undefined) return undefined;
  const m = /^([a-z0-9-]+) ([A-Za-z0-9+/]+={0,2})$/.exec(header.trim());
  if (!m) throw new InvalidArgumentError('Upload-Checksum must be "<algorithm> <base64 digest>"');
  const algorithm = m[1] as TusChecksumAlgorithm;
  if (!TUS_CHECKSUM_ALGORITHMS.includes(algorithm)) {
    throw new InvalidArgumentError(`Upload-Checksum: unsupported algorithm ${m[1]} (supported: ${TUS_CHECKSUM_ALGORITHMS.join(', ')})`);
  }
  return { algorithm, expected: Buffer.from(m[2], 'base64') };
}

/** Computes a chunk's checksum as it passes (crc32: big-endian, as tusd and the checksum extension's clients send it). */
export class ChunkHasher {
  private hash?: Hash;
  private crc = 0;

  constructor(readonly algorithm: TusChecksumAlgorithm) {
    if (algorithm !== 'crc32') this.hash = createHash(algorithm);
  }

  update(chunk: Buffer): void {
    if (this.hash) this.hash.update(chunk);
    else this.crc = crc32(chunk, this.crc);
  }

  digest(): Buffer {
    if (this.hash) return this.hash.digest();
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.crc >>> 0);
    return out;
  }
}

/** `Upload-Expires` (RFC 9110 HTTP-date). */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
