import { type NativeAddon, nativeAddon } from '@ferry/native';
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

  constructor(
    private readonly addon: NativeAddon,
    readonly algorithm: ResumableAlgorithm,
    private readonly state: Buffer,
  ) {}

  update(chunks: readonly Buffer[]): Promise<void> {
    const run = this.busy.then(
      () => new Promise<void>((resolve, reject) => this.addon.update(this.state, chunks, (err) => (err ? reject(err) : resolve()))),
    );
    this.busy = run.catch(() => undefined);
    return run;
  }

  save(): string {
    return `${this.addon.tag}.${this.state.toString('base64url')}`;
  }

  hex(): string {
    return this.addon.digest(this.state).toString('hex');
  }
}

class NativeHashing implements ResumableHashing {
  readonly backend = 'openssl' as const;

  constructor(private readonly addon: NativeAddon) {}

  async start(algorithm: ResumableAlgorithm): Promise<ResumableDigest> {
    return new NativeDigest(this.addon, algorithm, this.addon.init(algorithm));
  }

  async load(saved: string): Promise<ResumableDigest> {
    const dot = saved.lastIndexOf('.');
    if (saved.slice(0, dot) !== this.addon.tag) throw new UnloadableStateError(`a digest state of another build (${saved.slice(0, dot)})`);
    const state = Buffer.from(saved.slice(dot + 1), 'base64url');
    const algorithm = state.length === this.addon.init('md5').length ? 'md5' : 'sha256';
    const digest = new NativeDigest(this.addon, algorithm, state);
    try {
      digest.hex(); // the addon checks the layout
    } catch (err) {
      throw new UnloadableStateError(`not a digest state: ${(err as Error).message}`);
    }
    return digest;
  }
}

/** hash-wasm's hashers yield to the event loop between chunks of this size. */
const WASM_SLICE = 1 << 20;

class WasmDigest implements ResumableDigest {
  private busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly tag: string,
    readonly algorithm: ResumableAlgorithm,
    private readonly hasher: IHasher,
  ) {}

  update(chunks: readonly Buffer[]): Promise<void> {
    const run = this.busy.then(async () => {
      for (const chunk of chunks) {
        for (let at = 0; at < chunk.length; at += WASM_SLICE) {
          this.hasher.update(chunk.subarray(at, at + WASM_SLICE));
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    });
    this.busy = run.catch(() => undefined);
    return run;
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
  const native = new NativeHashing(addon);
  if (backend === undefined) chosen = native;
  return native;
}
