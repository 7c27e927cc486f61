import type { Transform } from 'node:stream';
import { FailedPreconditionError, InvalidArgumentError } from '@ferry/errors';

/**
 * zstd for the REAPI's `compressed-blobs/zstd/...` and batch compressors, over the optional
 * `zstd-napi` addon (the zstd library, built at `npm install`; Node.js 20 has no zstd of its own).
 * Without it (no C compiler when installing), `zstdAvailable()` is false and Ferry neither
 * advertises nor accepts zstd.
 */
// What Ferry uses of zstd-napi, declared here: the package is optional (npm drops it when its
// addon does not build), and Ferry must still typecheck and build without it.
interface DCtx {
  setParameter(param: number, value: number): void;
  /** [remaining hint (0: a frame ended), bytes produced, bytes consumed] */
  decompressStream(dst: Buffer, src: Buffer): [number, number, number];
}
interface Binding {
  DCtx: new () => DCtx;
  DParameter: { windowLogMax: number };
}
interface HighLevel {
  CompressStream: new (params: { compressionLevel: number }) => Transform;
  Compressor: new () => { setParameters(params: { compressionLevel: number }): void; compress(data: Buffer): Buffer };
}

let loaded: { binding: Binding; api: HighLevel } | null | undefined;

function load(): { binding: Binding; api: HighLevel } | null {
  if (loaded === undefined) {
    try {
      loaded = { binding: require('zstd-napi/binding') as Binding, api: require('zstd-napi') as HighLevel };
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

function zstd(): { binding: Binding; api: HighLevel } {
  const z = load();
  if (!z) throw new FailedPreconditionError('zstd is not available on this server (the zstd-napi addon was not built)');
  return z;
}

/** Whether this server can compress and decompress zstd. */
export function zstdAvailable(): boolean {
  return load() !== null;
}

/**
 * The level Ferry compresses reads at: fast (several hundred MB/s a core), and fixed, so the same
 * blob always compresses to the same bytes and a read resumed at a compressed offset continues it.
 */
export const ZSTD_READ_LEVEL = 1;

/** Decoders refuse frames that need a larger window than this (2^27 = 128 MiB, zstd's default limit). */
const WINDOW_LOG_MAX = 27;
/** Output buffer of each decompression step (zstd's recommended ZSTD_DStreamOutSize). */
const OUT_BYTES = 128 * 1024 + 512;

function badFrame(err: unknown): InvalidArgumentError {
  const why = err instanceof Error ? err.message : String(err);
  return new InvalidArgumentError(`the data is not a valid zstd stream: ${why}`);
}

function tooLarge(maxBytes: number): InvalidArgumentError {
  return new InvalidArgumentError(`the zstd data decompresses to more than the ${maxBytes} bytes the digest declares`);
}

/**
 * Decompression of one zstd stream (one or more frames), refusing with InvalidArgumentError a
 * malformed or truncated stream, or one that decompresses to more than `maxBytes` (checked as it
 * decompresses: a small bomb never allocates its output).
 */
export class ZstdInflater {
  private readonly dctx: DCtx;
  private inFrame = false;
  /** The next output buffer: replaced only once output went out in it (tiny inputs allocate nothing). */
  private buf = Buffer.allocUnsafe(OUT_BYTES);
  produced = 0;

  constructor(private readonly maxBytes: number) {
    const { binding } = zstd();
    this.dctx = new binding.DCtx();
    this.dctx.setParameter(binding.DParameter.windowLogMax, WINDOW_LOG_MAX);
  }

  /**
   * Decompresses `src` piece by piece (each a buffer of its own, never reused), lazily: a caller
   * that writes each piece before taking the next holds one piece at a time, however far a small
   * input decompresses.
   */
  *pieces(src: Buffer): Generator<Buffer> {
    for (;;) {
      let ret: number, produced: number, consumed: number;
      try {
        [ret, produced, consumed] = this.dctx.decompressStream(this.buf, src);
      } catch (err) {
        throw badFrame(err);
      }
      const full = produced === this.buf.length;
      if (produced > 0) {
        this.produced += produced;
        if (this.produced > this.maxBytes) throw tooLarge(this.maxBytes);
        const piece = this.buf.subarray(0, produced);
        this.buf = Buffer.allocUnsafe(OUT_BYTES);
        yield piece;
      }
      src = src.subarray(consumed);
      if (src.length === 0 && (!full || ret === 0)) {
        this.inFrame = ret !== 0;
        return;
      }
    }
  }

  /** The stream ended: refused if it ended inside a frame. */
  end(): void {
    if (this.inFrame) throw badFrame('it ends in the middle of a frame');
  }
}

/** Decompresses a whole zstd buffer (batch requests: bounded by the batch size), with the checks of ZstdInflater. */
export function zstdDecompress(data: Buffer, maxBytes: number): Buffer {
  const inflater = new ZstdInflater(maxBytes);
  const pieces = [...inflater.pieces(data)];
  inflater.end();
  return Buffer.concat(pieces);
}

/** A transform that compresses to one zstd frame at ZSTD_READ_LEVEL. */
export function zstdCompressor(): Transform {
  return new (zstd().api.CompressStream)({ compressionLevel: ZSTD_READ_LEVEL });
}

/** Compresses a whole buffer to one zstd frame at ZSTD_READ_LEVEL. */
export function zstdCompress(data: Buffer): Buffer {
  const c = new (zstd().api.Compressor)();
  c.setParameters({ compressionLevel: ZSTD_READ_LEVEL });
  return c.compress(data);
}
