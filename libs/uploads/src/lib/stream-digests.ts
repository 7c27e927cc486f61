import type { DigestNeeds, Digests, HashPool, OffloadedHasher } from './hashing';
import { InlineHasher } from './hashing';

/** Digests that run on a pool thread when a stream needs them; the rest run where the bytes arrive. */
const OFFLOADED = ['md5', 'sha512'] as const;
type Offloaded = (typeof OFFLOADED)[number];

/**
 * The digests of one upload stream, computed as its bytes arrive.
 *
 * sha256 (always: the content address) and crc32c are computed on the receiving thread, chunk by
 * chunk, while each chunk is still in the CPU cache (`arrived`). Measured on an object API PUT of
 * 1 GiB here (tools/bench/peer.mjs): hashing on arrival costs sha256's own ~0.55 CPU-s/GiB, while
 * joining chunks into batches and handing them to a hashing thread cost ~1.8 CPU-s/GiB in all
 * (the copy, the transfer, the thread's wake-ups, and the bytes read back from memory on both
 * sides), and the stream ran slower (0.6-0.8x of the tus reference server against 0.92x).
 *
 * md5 and sha512 (~1.3 CPU-s/GiB each, needed only where a protocol or a client asks) run on a pool
 * thread in parallel, fed each batch once it is written (`written`, BatchedWriter's `afterWrite`):
 * on the receiving thread they would cap one stream near 450 MB/s.
 */
export class StreamDigests {
  private readonly inline: InlineHasher;
  private readonly offloaded?: OffloadedHasher<Offloaded>;

  constructor(pool: HashPool, needs: DigestNeeds) {
    this.inline = new InlineHasher(needs.filter((a) => a === 'crc32c'));
    const slow = OFFLOADED.filter((a) => needs.includes(a));
    if (slow.length > 0) this.offloaded = pool.offloaded(slow);
  }

  /** Feeds a chunk as it arrives (sha256, crc32c). The chunk stays the caller's. */
  arrived(chunk: Buffer): void {
    this.inline.update(chunk);
  }

  /**
   * For BatchedWriter's `afterWrite`: takes each written batch (and its memory) for the digests on
   * the pool thread; undefined when the stream needs none.
   */
  get written(): ((batch: Buffer) => Promise<void> | void) | undefined {
    const offloaded = this.offloaded;
    return offloaded && ((batch) => offloaded.update(batch));
  }

  /**
   * Feeds bytes read back from storage (a resumed stream's committed prefix) to every digest; takes
   * the chunk (its memory may move to the pool thread).
   */
  async update(chunk: Buffer): Promise<void> {
    this.inline.update(chunk);
    await this.offloaded?.update(chunk);
  }

  async digest(): Promise<Digests> {
    const [inline, offloaded] = await Promise.all([this.inline.digest(), this.offloaded?.digest()]);
    return { ...inline, ...offloaded };
  }

  dispose(): void {
    this.offloaded?.dispose();
  }
}
