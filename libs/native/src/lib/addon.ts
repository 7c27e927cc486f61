import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** What libs/native/c/ferry_native.c exports (see its header). */
export interface NativeAddon {
  /** Names the digest state layout: a state saved with another tag cannot be loaded here. */
  readonly tag: string;
  init(algorithm: 'md5' | 'sha256'): Buffer;
  update(state: Buffer, chunks: readonly Buffer[], cb: (err: Error | null) => void): void;
  /** Hashes `chunk` after `state` on the calling thread, now (never while an `update` of the state runs). */
  updateSync(state: Buffer, chunk: Buffer): void;
  digest(state: Buffer): Buffer;
  /** An exclusive OFD lock of [start, start+length) (length 0: to the end); false if held elsewhere. Never waits. */
  lock(fd: number, start: number, length: number): boolean;
  unlock(fd: number, start: number, length: number): void;
}

const FILE = 'ferry_native.node';

/**
 * Where the addon is: beside an app's bundle (dist/apps/<app>/native, copied by tools/webpack), or
 * where tools/native/build.mjs builds it (libs/native/build) above this file.
 */
function findAddon(): string | undefined {
  const candidates = [join(__dirname, 'native')];
  for (let dir = __dirname; ; dir = dirname(dir)) {
    candidates.push(join(dir, 'libs/native/build'));
    if (dirname(dir) === dir) break;
  }
  return candidates.map((d) => join(d, FILE)).find((p) => existsSync(p));
}

let loaded: { addon?: NativeAddon; path?: string } | undefined;

/** The native addon, or undefined where it was not built (no C compiler): see libs/native/README.md. */
export function nativeAddon(): NativeAddon | undefined {
  if (!loaded) {
    const path = findAddon();
    const module = { exports: {} };
    // a path known at run time only: nothing for the bundler to resolve
    if (path) process.dlopen(module, path);
    loaded = path ? { addon: module.exports as NativeAddon, path } : {};
  }
  return loaded.addon;
}

/**
 * The file `nativeAddon()` loaded (undefined without it), for a worker thread to load the same
 * build (`process.dlopen`: an N-API addon can be loaded by every thread).
 */
export function nativeAddonPath(): string | undefined {
  nativeAddon();
  return loaded?.path;
}
