import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Endpoints, Options } from './args';
import { InterruptedError, LocalFileError, TransientError, isTransient } from './errors';
import type { Progress } from './progress';

/** What the server holds under a name. */
export interface RemoteStatus {
  name: string;
  /** Bytes the server holds durably (for an upload in progress, where it resumes). */
  committed: number;
  /** Finished and published. */
  complete: boolean;
  /** Protocol-specific details worth showing (upload URL, ...). */
  details?: Record<string, unknown>;
}

export interface UploadResult {
  /** The catalog name the bytes were published under. */
  name: string;
  size: number;
  /** Where this run began (0: from scratch). */
  resumedAt: number;
  /** The file was there already, whole. */
  alreadyComplete: boolean;
}

export interface DownloadResult {
  size: number;
  resumedAt: number;
}

/** What a transfer gets from the command: its display, Ctrl-C, and the options. */
export interface TransferContext {
  progress: Progress;
  signal: AbortSignal;
  options: Options;
}

/** A local file to upload, as it was when the command began. */
export interface LocalFile {
  path: string;
  size: number;
  mtimeMs: number;
}

/** One protocol's client: the same three operations for every protocol. */
export interface ProtocolClient {
  status(name: string): Promise<RemoteStatus>;
  upload(file: LocalFile, name: string, ctx: TransferContext): Promise<UploadResult>;
  download(name: string, file: string, ctx: TransferContext): Promise<DownloadResult>;
  close(): void;
}

export type ProtocolFactory = (endpoints: Endpoints, options: Options) => ProtocolClient;

/** The file to upload: it must exist and be a regular file. */
export function localFile(path: string): LocalFile {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new LocalFileError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read it (${code})`);
  }
  if (!st.isFile()) throw new LocalFileError(`${path}: not a regular file`);
  return { path, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
}

/** The size of `path`, or undefined when it does not exist. */
export function sizeIfExists(path: string): number | undefined {
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new LocalFileError(`${path}: not a regular file`);
    return st.size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const key = sha256Key(path);
  const known = sha256s.get(key);
  if (known) {
    try {
      return await known;
    } catch {
      // the thread failed: hash here
    }
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024, signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Hashes files on a thread of their own (see startSha256), by path, size and modification time. */
const sha256s = new Map<string, Promise<string>>();

/** What a file's hash is remembered by: a file changed since is hashed again. */
function sha256Key(path: string): string {
  const st = statSync(path);
  return `${path}\0${st.size}\0${st.mtimeMs}`;
}

const HASH_THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { createReadStream } = require('node:fs');
const hash = createHash('sha256');
createReadStream(workerData, { highWaterMark: 4 * 1024 * 1024 })
  .on('data', (chunk) => hash.update(chunk))
  .on('error', (err) => parentPort.postMessage({ error: String(err && err.message) }))
  .on('end', () => parentPort.postMessage({ hex: hash.digest('hex') }));
`;

/**
 * Starts hashing `file` on a worker thread, beside the transfer (on another core: the final check
 * against the catalog then costs no wall time of its own); `sha256File` of the same unchanged file
 * takes the result. A failure falls back to hashing when asked.
 */
export function startSha256(file: LocalFile): void {
  const key = sha256Key(file.path);
  if (sha256s.has(key)) return;
  const worker = new Worker(HASH_THREAD, { eval: true, workerData: file.path });
  worker.unref();
  const done = new Promise<string>((resolve, reject) => {
    worker.once('message', (m: { hex?: string; error?: string }) => (m.hex ? resolve(m.hex) : reject(new Error(m.error))));
    worker.once('error', reject);
  }).finally(() => void worker.terminate());
  sha256s.set(key, done);
  done.catch(() => sha256s.delete(key));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Paces a stream of bytes to `bytesPerSecond` (0: no limit): `await pace(n)` after moving n bytes
 * sleeps as long as the transfer is ahead of the rate.
 */
export function pacer(bytesPerSecond: number, signal?: AbortSignal): (bytes: number) => Promise<void> {
  const started = Date.now();
  let moved = 0;
  return async (bytes) => {
    moved += bytes;
    if (bytesPerSecond <= 0) return;
    const ahead = (moved / bytesPerSecond) * 1000 - (Date.now() - started);
    if (ahead > 0) await sleep(ahead, signal);
  };
}

export interface RetryOptions {
  signal: AbortSignal;
  progress: Progress;
  /** Tries in all (default 10). */
  attempts?: number;
  /** The first wait; doubled each time up to 10 s (default 500 ms). */
  firstDelayMs?: number;
}

/**
 * Runs `attempt` again while it fails with a TransientError, waiting longer each time (with
 * jitter); the last error is thrown. Ctrl-C during a wait stops at once.
 */
export async function withRetries<T>(what: string, attempt: () => Promise<T>, o: RetryOptions): Promise<T> {
  const attempts = o.attempts ?? 10;
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isTransient(err) || i >= attempts || o.signal.aborted) throw err;
      const delay = Math.min(10_000, (o.firstDelayMs ?? 500) * 2 ** (i - 1)) * (0.75 + Math.random() / 2);
      o.progress.note(`${what}: ${err.message}; retrying in ${(delay / 1000).toFixed(1)} s (${i}/${attempts - 1})`);
      await sleep(delay, o.signal);
    }
  }
}

/** Throws the InterruptedError of a Ctrl-C once `signal` is aborted. */
export function throwIfInterrupted(signal: AbortSignal, at: number, what: string): void {
  if (signal.aborted) throw new InterruptedError(`${what} interrupted at byte ${at}`, at);
}

/** A connection failure (refused, reset) as a TransientError. */
export function connectionError(where: string, err: unknown): TransientError {
  const e = err as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  const code = e.cause?.code ?? e.code;
  return new TransientError(`${where}: ${code ?? e.cause?.message ?? e.message ?? String(err)}`);
}
