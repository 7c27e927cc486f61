import { type NativeAddon, nativeAddon, nativeAddonPath } from '@ferry/native';
import { createMD5, createSHA256, type IHasher } from 'hash-wasm';

/** The digests that can be saved mid-stream and continued by another process. */
export type ResumableAlgorithm = 'md5' | 'sha256';

/**
 * A digest over bytes fed in order, whose state can be saved (a string under 300 characters, for
 * Redis) after any update and loaded by another process to continue. Updates run one at a time.
 */
export interface ResumableDigest {
  readonly algorithm: ResumableAlgorithm;
  /** Hashes `chunks` in order after what the digest covers (off the event loop where it can). */
  update(chunks: readonly Buffer[]): Promise<void>;
  /**
   * Hashes `chunk` after what the digest covers on this thread, at once (a chunk still in the CPU
   * cache, as it arrives); never while an `update` runs.
   */
  updateSync(chunk: Buffer): void;
  /** The saved state: what `ResumableHashing.load` continues from. */
  save(): string;
  /** The hex digest of what the digest covers so far (the digest goes on unchanged). */
  hex(): string;
}

/** A saved state this process cannot continue (another build wrote it, or it is not a state). */
export class UnloadableStateError extends Error {}

export interface ResumableHashing {
  /** 'openssl' (the native addon over Node's OpenSSL, on libuv's pool) or 'wasm' (hash-wasm, on the event loop). */
  readonly backend: 'openssl' | 'wasm';
  start(algorithm: ResumableAlgorithm): Promise<ResumableDigest>;
  /** Rejects with UnloadableStateError a state another backend or build saved. */
  load(saved: string): Promise<ResumableDigest>;
}

class NativeDigest implements ResumableDigest {
  private busy: Promise<void> = Promise.resolve();
  private updating = 0;

  constructor(
    private readonly addon: NativeAddon,
    readonly algorithm: ResumableAlgorithm,
    readonly state: Buffer,
  ) {}

  update(chunks: readonly Buffer[]): Promise<void> {
    this.updating++;
    const run = this.busy
      .then(() => new Promise<void>((resolve, reject) => this.addon.update(this.state, chunks, (err) => (err ? reject(err) : resolve()))))
      .finally(() => this.updating--);
    this.busy = run.catch(() => undefined);
    return run;
  }

  updateSync(chunk: Buffer): void {
    if (this.updating > 0) throw new Error('updateSync while an update runs');
    this.addon.updateSync(this.state, chunk);
  }

  save(): string {
    return `${this.addon.tag}.${this.state.toString('base64url')}`;
  }

  hex(): string {
    return this.addon.digest(this.state).toString('hex');
  }
}

/**
 * The native backend's digest states as plain bytes, for a hashing thread that loads the addon
 * itself (HashPool's, for StreamDigests): the thread continues the bytes of a state it is handed
 * and hands back the bytes of the state it reached, which this process then saves as any digest's.
 */
export interface NativeStates extends ResumableHashing {
  /** The addon's file, for the thread to load (the same build: the same state layout). */
  readonly addonPath: string;
  /** A digest before any byte, at once (the native backend needs no setup). */
  startNow(algorithm: ResumableAlgorithm): ResumableDigest;
  /** A copy of the state of `digest`, a digest of this backend. */
  bytesOf(digest: ResumableDigest): Uint8Array;
  /** The digest whose state a thread handed back (UnloadableStateError if these are not a state's bytes). */
  fromBytes(bytes: Uint8Array): ResumableDigest;
}

class NativeHashing implements ResumableHashing, NativeStates {
  readonly backend = 'openssl' as const;

  constructor(
    private readonly addon: NativeAddon,
    readonly addonPath: string,
  ) {}

  async start(algorithm: ResumableAlgorithm): Promise<ResumableDigest> {
    return this.startNow(algorithm);
  }

  startNow(algorithm: ResumableAlgorithm): ResumableDigest {
    return new NativeDigest(this.addon, algorithm, this.addon.init(algorithm));
  }

  async load(saved: string): Promise<ResumableDigest> {
    const dot = saved.lastIndexOf('.');
    if (saved.slice(0, dot) !== this.addon.tag) throw new UnloadableStateError(`a digest state of another build (${saved.slice(0, dot)})`);
    return this.fromBytes(Buffer.from(saved.slice(dot + 1), 'base64url'));
  }

  fromBytes(bytes: Uint8Array): ResumableDigest {
    const state = Buffer.from(bytes);
    const algorithm = state.length === this.addon.init('md5').length ? 'md5' : 'sha256';
    const digest = new NativeDigest(this.addon, algorithm, state);
    try {
      digest.hex(); // the addon checks the layout
    } catch (err) {
      throw new UnloadableStateError(`not a digest state: ${(err as Error).message}`);
    }
    return digest;
  }

  bytesOf(digest: ResumableDigest): Uint8Array {
    if (!(digest instanceof NativeDigest)) throw new Error(`not a digest of ${this.addon.tag}`);
    return new Uint8Array(digest.state);
  }
}

/** hash-wasm's hashers yield to the event loop between chunks of this size. */
const WASM_SLICE = 1 << 20;

class WasmDigest implements ResumableDigest {
  private busy: Promise<void> = Promise.resolve();
  private updating = 0;

  constructor(
    private readonly tag: string,
    readonly algorithm: ResumableAlgorithm,
    private readonly hasher: IHasher,
  ) {}

  update(chunks: readonly Buffer[]): Promise<void> {
    this.updating++;
    const run = this.busy
      .then(async () => {
        for (const chunk of chunks) {
          for (let at = 0; at < chunk.length; at += WASM_SLICE) {
            this.hasher.update(chunk.subarray(at, at + WASM_SLICE));
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }
      })
      .finally(() => this.updating--);
    this.busy = run.catch(() => undefined);
    return run;
  }

  updateSync(chunk: Buffer): void {
    if (this.updating > 0) throw new Error('updateSync while an update runs');
    this.hasher.update(chunk);
  }

  save(): string {
    return `${this.tag}-${this.algorithm}.${Buffer.from(this.hasher.save()).toString('base64url')}`;
  }

  hex(): string {
    // digest() ends a hasher: a copy of its state gives the digest and it goes on
    const state = this.hasher.save();
    const hex = this.hasher.digest('hex');
    this.hasher.load(state);
    return hex;
  }
}

class WasmHashing implements ResumableHashing {
  readonly backend = 'wasm' as const;
  private readonly tag = 'hash-wasm-4';
  private readonly create: Record<ResumableAlgorithm, () => Promise<IHasher>> = { md5: createMD5, sha256: createSHA256 };

  async start(algorithm: ResumableAlgorithm): Promise<ResumableDigest> {
    return new WasmDigest(this.tag, algorithm, (await this.create[algorithm]()).init());
  }

  async load(saved: string): Promise<ResumableDigest> {
    const dot = saved.lastIndexOf('.');
    const head = saved.slice(0, dot);
    const algorithm = head === `${this.tag}-md5` ? 'md5' : head === `${this.tag}-sha256` ? 'sha256' : undefined;
    if (!algorithm) throw new UnloadableStateError(`a digest state of another build (${head})`);
    const hasher = await this.create[algorithm]();
    try {
      hasher.load(Buffer.from(saved.slice(dot + 1), 'base64url'));
    } catch (err) {
      throw new UnloadableStateError(`not a digest state: ${(err as Error).message}`);
    }
    return new WasmDigest(this.tag, algorithm, hasher);
  }
}

let chosen: ResumableHashing | undefined;

/**
 * The resumable hashing of this process: the native addon when it is built, else hash-wasm (about
 * 4x slower for sha256 here, and on the event loop). `backend` forces one (tests).
 */
export function resumableHashing(backend?: 'openssl' | 'wasm'): ResumableHashing {
  if (backend === 'wasm') return new WasmHashing();
  if (backend === undefined && chosen) return chosen;
  const addon = nativeAddon();
  if (!addon) {
    if (backend === 'openssl') throw new Error('the native addon is not built: run node tools/native/build.mjs');
    return (chosen = new WasmHashing());
  }
  const native = new NativeHashing(addon, nativeAddonPath() as string);
  if (backend === undefined) chosen = native;
  return native;
}

/**
 * The native states of this process's resumable hashing, for hashing threads (see NativeStates);
 * undefined where it is hash-wasm (no addon), or an addon built before `updateSync`.
 */
export function nativeStates(): NativeStates | undefined {
  const hashing = resumableHashing();
  return hashing instanceof NativeHashing && typeof nativeAddon()?.updateSync === 'function' ? hashing : undefined;
}
