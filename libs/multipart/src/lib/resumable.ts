import { type ResumableDigest, type ResumableHashing, UnloadableStateError, resumableHashing } from '@ferry/uploads';

/** A saved state of an upload's whole-file digests (opaque, a few hundred characters), as Redis keeps it between rounds. */
export type DigestState = string;

/**
 * The whole-file digests of a multipart upload, md5 (checked against the client's contentMD5Hex)
 * and sha256 (the content address), computed as parts land: saved after each round, continued by
 * whichever process takes the next one. The one place this lib meets @ferry/uploads' resumable
 * hashing.
 */
export interface ResumableDigests {
  /** The state before any byte. */
  start(): DigestState;
  /** Hashes `chunks` in order after `state` (md5 and sha256 in parallel, off the event loop); `beforeChunk` may stop it by throwing. */
  advance(state: DigestState, chunks: AsyncIterable<Buffer>, beforeChunk: () => void): Promise<DigestState>;
  final(state: DigestState): Promise<{ md5: string; sha256: string }>;
  /** Whether `err` says a saved state cannot be loaded (then the digests start again from byte 0). */
  unloadable(err: unknown): boolean;
}

/** Chunks are handed to the hashers in groups of about this many bytes (one call into the addon each). */
const GROUP_BYTES = 4 << 20;

/** The state before any byte: no hasher yet. */
const EMPTY = '';

export function resumableDigests(hashing: ResumableHashing = resumableHashing()): ResumableDigests {
  const load = async (state: DigestState): Promise<[ResumableDigest, ResumableDigest]> => {
    if (state === EMPTY) return Promise.all([hashing.start('md5'), hashing.start('sha256')]);
    const [md5, sha256, extra] = state.split(' ');
    if (!md5 || !sha256 || extra !== undefined) throw new UnloadableStateError('not a saved pair of digests');
    const loaded = await Promise.all([hashing.load(md5), hashing.load(sha256)]);
    if (loaded[0].algorithm !== 'md5' || loaded[1].algorithm !== 'sha256') throw new UnloadableStateError('not a saved pair of digests');
    return loaded;
  };
  return {
    start: () => EMPTY,
    async advance(state, chunks, beforeChunk) {
      const digests = await load(state);
      let group: Buffer[] = [];
      let size = 0;
      // the next group is read while the previous one is hashed
      let hashing: Promise<unknown> = Promise.resolve();
      const hand = async () => {
        await hashing;
        const g = group;
        hashing = Promise.all(digests.map((d) => d.update(g)));
        group = [];
        size = 0;
      };
      try {
        for await (const chunk of chunks) {
          beforeChunk();
          group.push(chunk);
          size += chunk.length;
          if (size >= GROUP_BYTES) await hand();
        }
        if (group.length > 0) await hand();
      } finally {
        // a stopped round still waits for the group being hashed (its state is then dropped)
        await hashing.catch(() => undefined);
      }
      await hashing;
      return `${digests[0].save()} ${digests[1].save()}`;
    },
    async final(state) {
      const [md5, sha256] = await load(state);
      return { md5: md5.hex(), sha256: sha256.hex() };
    },
    unloadable: (err) => err instanceof UnloadableStateError,
  };
}
