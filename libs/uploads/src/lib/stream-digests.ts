import { type Hash, createHash } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import type { DigestAlgorithm, DigestNeeds, Digests, HashPool, OffloadedHasher, ThreadStates } from './hashing';
import { algorithmsFor, crc32cHex } from './hashing';
import { type NativeStates, type ResumableDigest, UnloadableStateError, nativeStates } from './resumable-hash';

/** A chunk this large is not in the CPU cache any more when it arrives whole (a gRPC message). */
const LARGE_CHUNK_BYTES = 256 * 1024;
/** Digests too slow for the receiving thread (~1.3 CPU-s/GiB each): always on a pool thread. */
const SLOW: readonly DigestAlgorithm[] = ['md5', 'sha512'];

/** The digests a saved state may hold: md5 and sha256 as ResumableDigest states, crc32c its value. */
interface SavedStates {
  sha256: string;
  md5?: string;
  crc32c?: number;
}

/**
 * What `save` writes (JSON): the bytes the digests cover (`[0, at)`), which digests they are
 * (`needs`, see needsKey), their states, and a check over all three, so that a state altered
 * anywhere (a corrupt state can still have a state's layout) is refused rather than continued into
 * a wrong digest.
 */
interface SavedForm {
  at: number;
  needs: string;
  states: SavedStates;
  check: string;
}

/** The digests a stream continues from (see StreamDigests.resume). */
interface Resumed {
  native: NativeStates;
  sha256: ResumableDigest;
  md5?: ResumableDigest;
  crc32c?: number;
}

/** The digests computed on arrival, on the receiving thread. */
interface InlineDigest {
  update(chunk: Buffer): void;
  hex(): string;
  /** undefined: Node's own hash, which cannot be saved (a process without the native addon). */
  save?(): string;
}

function inlineOf(digest: ResumableDigest | Hash): InlineDigest {
  if ('updateSync' in digest) return { update: (c) => digest.updateSync(c), hex: () => digest.hex(), save: () => digest.save() };
  return { update: (c) => void digest.update(c), hex: () => digest.digest('hex') };
}

/** Which digests a stream of these needs computes (sha256 and the needs, once each, in one order). */
function needsKey(needs: DigestNeeds): string {
  return algorithmsFor(needs).sort().join(',');
}

function checkOf(at: number, needs: string, states: SavedStates): string {
  return createHash('sha256')
    .update(`${at}|${needs}|${JSON.stringify(states)}`)
    .digest('hex')
    .slice(0, 32);
}

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
 *
 * Where the native addon is built, sha256 and md5 are OpenSSL's digests through it (the same code
 * as Node's own, whose state cannot be read), on either thread, and crc32c is a number: `save`
 * gives their state, a few hundred bytes, and `resume` continues it in another process (the
 * upload's next writer, on any replica: UploadEngine.openWriter). sha512, and every digest of a
 * process without the addon, are Node's own: such a stream cannot be saved.
 */
export class StreamDigests {
  private mode?: 'arrival' | 'pool';
  private inline?: InlineDigest;
  private crc?: number;
  private offloaded?: OffloadedHasher<DigestAlgorithm>;

  constructor(
    private readonly pool: HashPool,
    private readonly needs: DigestNeeds,
    private readonly from?: Resumed,
  ) {}

  /**
   * The digests a stream saved (`save`) when they cover `at` bytes and are the ones `needs` asks
   * for; undefined when they cover other bytes or are other digests. Rejects with
   * UnloadableStateError a state this process cannot continue (no native addon, another build, or
   * not a state: altered, truncated): the caller hashes the bytes again.
   */
  static async resume(pool: HashPool, needs: DigestNeeds, at: number, saved: string): Promise<StreamDigests | undefined> {
    const native = nativeStates();
    if (!native) throw new UnloadableStateError('this process cannot continue saved digests (no native addon)');
    let form: SavedForm;
    try {
      form = JSON.parse(saved) as SavedForm;
    } catch {
      throw new UnloadableStateError('not saved digests');
    }
    const { states } = form ?? {};
    if (typeof states !== 'object' || states === null || checkOf(form.at, form.needs, states) !== form.check) {
      throw new UnloadableStateError('saved digests that fail their check');
    }
    if (form.at !== at || form.needs !== needsKey(needs)) return undefined;
    // (never sha512: such digests are not saved)
    if (Object.keys(states).sort().join(',') !== form.needs) {
      throw new UnloadableStateError(`saved digests ${Object.keys(states).join(',')}, not ${form.needs}`);
    }
    const load = async (algorithm: 'md5' | 'sha256', state: string | undefined) => {
      const digest = await native.load(String(state));
      if (digest.algorithm !== algorithm)
        throw new UnloadableStateError(`a saved ${digest.algorithm} state where ${algorithm} was expected`);
      return digest;
    };
    const crc = states.crc32c;
    if (crc !== undefined && !(Number.isInteger(crc) && crc >= 0 && crc < 2 ** 32)) throw new UnloadableStateError('not a crc32c');
    const resumed: Resumed = {
      native,
      sha256: await load('sha256', states.sha256),
      ...(states.md5 !== undefined ? { md5: await load('md5', states.md5) } : {}),
      ...(crc !== undefined ? { crc32c: crc } : {}),
    };
    return new StreamDigests(pool, needs, resumed);
  }

  private choose(mode: 'arrival' | 'pool'): void {
    this.mode = mode;
    const native = this.from?.native ?? nativeStates();
    const all = algorithmsFor(this.needs);
    const offloaded = mode === 'pool' ? all : all.filter((a) => SLOW.includes(a));
    if (mode === 'arrival') {
      this.inline = inlineOf(this.from?.sha256 ?? native?.startNow('sha256') ?? createHash('sha256'));
      if (all.includes('crc32c')) this.crc = this.from?.crc32c ?? 0;
    }
    if (offloaded.length === 0) return;
    const from = this.from;
    if (!native) {
      this.offloaded = this.pool.offloaded(offloaded);
      return;
    }
    const states: ThreadStates = {};
    for (const a of offloaded) {
      const state = a === 'crc32c' ? from?.crc32c : a === 'md5' || a === 'sha256' ? from?.[a] : undefined;
      if (state !== undefined) states[a] = typeof state === 'number' ? state : native.bytesOf(state);
    }
    this.offloaded = this.pool.offloaded(offloaded, { addonPath: native.addonPath, from: states });
  }

  /** Feeds a chunk of the stream as it arrives (before it is written). */
  arrived(chunk: Buffer): void {
    if (!this.mode) this.choose(chunk.length >= LARGE_CHUNK_BYTES ? 'pool' : 'arrival');
    this.inline?.update(chunk);
    if (this.crc !== undefined) this.crc = crc32c(chunk, this.crc);
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
    if (this.crc !== undefined) this.crc = crc32c(chunk, this.crc);
    await this.offloaded?.update(chunk);
  }

  async digest(): Promise<Digests> {
    if (!this.mode) this.choose('arrival'); // nothing arrived: the digests of what they resumed from, or of no bytes
    const offloaded = await this.offloaded?.digest();
    return {
      ...(this.inline ? { sha256: this.inline.hex() } : {}),
      ...(this.crc !== undefined ? { crc32c: crc32cHex(this.crc) } : {}),
      ...offloaded,
    } as Digests;
  }

  /**
   * The state of the digests, which cover the `at` bytes fed so far (every byte: the caller
   * drained the writes and the hashing), for `resume` to continue elsewhere; undefined when a digest
   * cannot be saved (see the class). The digests go on; not after `digest`.
   */
  async save(at: number): Promise<string | undefined> {
    if (!this.mode) this.choose('arrival');
    const native = this.from?.native ?? nativeStates();
    if (!native) return undefined;
    const states: Partial<SavedStates> = {};
    if (this.inline) {
      const sha256 = this.inline.save?.();
      if (sha256 === undefined) return undefined;
      states.sha256 = sha256;
    }
    if (this.crc !== undefined) states.crc32c = this.crc;
    if (this.offloaded) {
      const thread = await this.offloaded.save();
      if (!thread) return undefined;
      for (const [a, state] of Object.entries(thread)) {
        if (a === 'crc32c' && typeof state === 'number') states.crc32c = state;
        else if ((a === 'md5' || a === 'sha256') && state instanceof Uint8Array) states[a] = native.fromBytes(state).save();
        else return undefined;
      }
    }
    if (states.sha256 === undefined) return undefined;
    // (one key order whoever saved them: the check is over their JSON)
    const ordered: SavedStates = {
      ...(states.crc32c !== undefined ? { crc32c: states.crc32c } : {}),
      ...(states.md5 !== undefined ? { md5: states.md5 } : {}),
      sha256: states.sha256,
    };
    const needs = needsKey(this.needs);
    const form: SavedForm = { at, needs, states: ordered, check: checkOf(at, needs, ordered) };
    return JSON.stringify(form);
  }

  dispose(): void {
    this.offloaded?.dispose();
  }
}
