import type { DigestAlgorithm, DigestNeeds, Digests, HashPool, OffloadedHasher } from './hashing';
import { InlineHasher, algorithmsFor } from './hashing';

/** A chunk this large is not in the CPU cache any more when it arrives whole (a gRPC message). */
const LARGE_CHUNK_BYTES = 256 * 1024;
/** Digests too slow for the receiving thread (~1.3 CPU-s/GiB each): always on a pool thread. */
const SLOW: readonly DigestAlgorithm[] = ['md5', 'sha512'];

/**
 * The digests of one upload stream, computed as its bytes arrive, where they cost least. Each
 * stream picks one way at its first chunk:
 *
 * - **on arrival**, for streams of small chunks (HTTP bodies arrive in 64 KiB reads, Bazel sends
 *   16 KiB messages): sha256 (the content address) and crc32c are computed on the receiving thread,
 *   chunk by chunk, while each chunk is still in the CPU cache, and the chunks are written without
 *   being copied. Measured on an object API PUT of 1 GiB (tools/bench/peer.mjs): 0.98x the tus
 *   reference server at 1.29x its CPU, against 0.70x at 1.76x when each 1 MiB batch was joined
 *   (a copy) and handed to a hashing thread (a transfer, the thread's wake-ups, and the bytes read
 *   back from memory on both sides).
 * - **on a pool thread**, for streams of large chunks (gRPC clients send 1-2 MiB messages): a
 *   message is no longer in the cache anyway, and the thread takes its memory and frees it at once;
 *   dead messages on the receiving thread would outlive V8's young-generation collections and pile
 *   up until a full one (measured: ingest-grpc's peak RSS 30 MiB higher). A resumed stream, which
 *   re-hashes its committed prefix read back from storage, takes this way too.
 *
 * md5 and sha512 (needed only where a protocol or a client asks) always run on a pool thread, in
 * parallel with the rest, fed each batch once it is written: on the receiving thread they would
 * cap one stream near 450 MB/s.
 */
export class StreamDigests {
  private mode?: 'arrival' | 'pool';
  private inline?: InlineHasher;
  private offloaded?: OffloadedHasher<DigestAlgorithm>;

  constructor(
    private readonly pool: HashPool,
    private readonly needs: DigestNeeds,
  ) {}

  private choose(mode: 'arrival' | 'pool'): void {
    this.mode = mode;
    const all = algorithmsFor(this.needs);
    const offloaded = mode === 'pool' ? all : all.filter((a) => SLOW.includes(a));
    if (mode === 'arrival') this.inline = new InlineHasher(all.filter((a) => a === 'crc32c'));
    if (offloaded.length > 0) this.offloaded = this.pool.offloaded(offloaded);
  }

  /** Feeds a chunk of the stream as it arrives (before it is written). */
  arrived(chunk: Buffer): void {
    if (!this.mode) this.choose(chunk.length >= LARGE_CHUNK_BYTES ? 'pool' : 'arrival');
    this.inline?.update(chunk);
  }

  /**
   * BatchedWriter's `afterWrite`: the digests on the pool thread take each batch once it is
   * written (and the memory of its chunks: the caller must not touch them afterwards). Costs
   * nothing when the stream needs none.
   */
  readonly written = (batch: readonly Buffer[], length: number): Promise<void> | void => {
    const offloaded = this.offloaded;
    if (!offloaded) return;
    return offloaded.update(batch.length === 1 ? batch[0] : Buffer.concat(batch, length));
  };

  /**
   * Feeds bytes read back from storage (a resumed stream's committed prefix, before anything
   * arrives) to every digest; takes the chunk.
   */
  async update(chunk: Buffer): Promise<void> {
    if (!this.mode) this.choose('pool');
    this.inline?.update(chunk);
    await this.offloaded?.update(chunk);
  }

  async digest(): Promise<Digests> {
    if (!this.mode) this.choose('arrival'); // nothing arrived: the digests of no bytes
    const [inline, offloaded] = await Promise.all([this.inline?.digest(), this.offloaded?.digest()]);
    return { ...inline, ...offloaded } as Digests;
  }

  dispose(): void {
    this.offloaded?.dispose();
  }
}
