import { randomBytes } from 'node:crypto';
import { constants, createReadStream, statSync } from 'node:fs';
import { FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { InternalError, NotFoundError, UnavailableError } from '@ferry/errors';
import { nativeAddon } from '@ferry/native';
import { SHA256_EMPTY, StagingEntry, StagingFile, Storage, assertSha256, assertUploadId } from './storage';

/**
 * Local-disk storage under one data directory:
 *
 *   <dataDir>/staging/<uploadId>              bytes of an upload in progress
 *   <dataDir>/blobs/sha256/<ab>/<sha256>      published content, one file per digest
 *
 * Publishing is a rename of the (already fsynced) staging file into the blob tree + fsync of the
 * blob directory, so a blob is either absent or complete after a crash. Paths are built only from
 * upload ids Ferry generated and hex digests, both validated, so no client-chosen name reaches the
 * filesystem.
 */
export class FsStorage implements Storage {
  readonly kind = 'fs' as const;
  private readonly stagingDir: string;
  private readonly blobDir: string;
  private prepared?: Promise<void>;
  /** Per staging file opened for parts: the tail of its chain of writes (see openStagingForParts). */
  private readonly partWrites = new Map<string, Promise<void>>();

  /**
   * @param lockWaitMs how long an open waits for a previous writer of the same staging bytes to
   * close them (see openStaging) before UnavailableError
   */
  constructor(
    readonly dataDir: string,
    private readonly lockWaitMs = 5_000,
  ) {
    this.stagingDir = join(dataDir, 'staging');
    this.blobDir = join(dataDir, 'blobs', 'sha256');
  }

  private prepare(): Promise<void> {
    this.prepared ??= Promise.all([mkdir(this.stagingDir, { recursive: true }), mkdir(this.blobDir, { recursive: true })]).then(
      () => undefined,
    );
    return this.prepared;
  }

  private stagingPath(uploadId: string): string {
    assertUploadId(uploadId);
    return join(this.stagingDir, uploadId);
  }

  private blobPath(sha256: string): string {
    assertSha256(sha256);
    return join(this.blobDir, sha256.slice(0, 2), sha256);
  }

  async openStaging(uploadId: string, size: number): Promise<StagingFile> {
    await this.prepare();
    const path = this.stagingPath(uploadId);
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
      // A new file: make its directory entry durable before any byte of it is acknowledged.
      await syncDir(this.stagingDir).catch(async (e: unknown) => {
        await fh.close();
        throw e;
      });
    }
    try {
      // locked before it is cut: a previous writer's late bytes past `size` are cut with the rest
      await this.lock(fh, uploadId, 0, 0);
      const staged = (await fh.stat()).size;
      // Truncating up would invent zero bytes where committed ones were lost: refuse instead.
      if (staged < size) throw new InternalError(`upload ${uploadId}: ${size} bytes committed but only ${staged} staged`);
      // Anything past `size` was never committed: drop it so stale bytes cannot be published.
      if (staged > size) await fh.truncate(size);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new FsStagingFile(uploadId, fh);
  }

  async openStagingForParts(uploadId: string, size: number, range?: { start: number; end: number }): Promise<StagingFile> {
    await this.prepare();
    const path = this.stagingPath(uploadId);
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      if (range && range.end > range.start) await this.lock(fh, uploadId, range.start, range.end - range.start);
      const staged = (await fh.stat()).size;
      if (staged > size) throw new InternalError(`upload ${uploadId}: staging holds ${staged} bytes, more than its ${size}`);
      if (staged < size) {
        // A new file (or one whose creation was cut short): a hole of the final size, and its
        // directory entry made durable before any part written into it is acknowledged.
        await fh.truncate(size);
        await syncDir(this.stagingDir);
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
    // Writers of one file (the parts PUT in parallel) take turns: concurrent writes into one inode
    // serialise on its lock in the kernel anyway, and the waiting threads spin, which measured
    // ~1.7x the CPU per GiB of the same writes issued one at a time (tools/bench/one-file-writes.mjs).
    return new FsStagingFile(uploadId, fh, (write) => {
      const run = (this.partWrites.get(path) ?? Promise.resolve()).then(write);
      const tail = run.catch(() => undefined);
      this.partWrites.set(path, tail);
      void tail.then(() => this.partWrites.get(path) === tail && this.partWrites.delete(path));
      return run;
    });
  }

  /**
   * Locks [start, start+length) of a staging file (length 0: to its end) for this file handle until
   * it is closed (an open file description lock, released by the kernel if the process dies too).
   * The lease in Redis makes one writer at a time current; the lock keeps a writer that lost its
   * lease without knowing it (a process paused past it) from writing once its successor has begun:
   * the successor waits for it to notice (its next write checks the lease) and close. Without the
   * native addon (no C compiler at install) there is no lock, only the lease check before each
   * write (libs/native/README.md).
   */
  private async lock(fh: FileHandle, uploadId: string, start: number, length: number): Promise<void> {
    const addon = nativeAddon();
    if (!addon) return;
    const deadline = performance.now() + this.lockWaitMs;
    for (let pause = 2; !addon.lock(fh.fd, start, length); pause = Math.min(pause * 2, 100)) {
      if (performance.now() >= deadline) {
        const what = length === 0 ? 'its staged bytes' : `bytes ${start}-${start + length - 1} of it`;
        throw new UnavailableError(`a previous writer of upload ${uploadId} still holds ${what} (a stalled process); try again`);
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  async stagingSize(uploadId: string): Promise<number | undefined> {
    return sizeOf(this.stagingPath(uploadId));
  }

  readStaging(uploadId: string, start: number, end: number): Readable {
    return readRange(this.stagingPath(uploadId), start, end, 1024 * 1024);
  }

  async deleteStaging(uploadId: string): Promise<void> {
    await rm(this.stagingPath(uploadId), { force: true });
  }

  async *listStaging(): AsyncIterable<StagingEntry> {
    await this.prepare();
    for (const uploadId of await readdir(this.stagingDir)) {
      try {
        const s = await stat(join(this.stagingDir, uploadId));
        yield { uploadId, size: s.size, modifiedMs: s.mtimeMs };
      } catch {
        // removed while listing
      }
    }
  }

  async publishStaging(uploadId: string, sha256: string): Promise<void> {
    const from = this.stagingPath(uploadId);
    const to = this.blobPath(sha256);
    if ((await sizeOf(to)) !== undefined) {
      await rm(from, { force: true });
      return;
    }
    // The caller made the staged bytes durable (Storage contract): only the rename needs syncing.
    if ((await sizeOf(from)) === undefined) throw new NotFoundError(`no staged bytes for upload ${uploadId}`);
    await mkdir(dirname(to), { recursive: true });
    await rename(from, to);
    await syncDir(dirname(to));
    await syncDir(this.stagingDir);
  }

  async putBlob(data: Buffer, sha256: string): Promise<void> {
    const to = this.blobPath(sha256);
    if (sha256 === SHA256_EMPTY || (await sizeOf(to)) !== undefined) return;
    await this.prepare();
    // A private temporary name in staging (same filesystem), never visible as a blob until renamed.
    const tmp = join(this.stagingDir, `put-${randomBytes(12).toString('hex')}`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.datasync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    await mkdir(dirname(to), { recursive: true });
    await rename(tmp, to);
    await syncDir(dirname(to));
  }

  async blobSize(sha256: string): Promise<number | undefined> {
    if (sha256 === SHA256_EMPTY) return 0;
    return sizeOf(this.blobPath(sha256));
  }

  /**
   * Synchronous stats in slices, the event loop free between them: a stat through the thread pool
   * costs ~30 us of round trips, a synchronous one ~6 us (10,000 digests: ~60 ms instead of ~350).
   */
  async blobSizes(sha256s: readonly string[]): Promise<(number | undefined)[]> {
    const out: (number | undefined)[] = [];
    for (let i = 0; i < sha256s.length; i++) {
      if (i > 0 && i % STAT_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
      const sha256 = sha256s[i];
      out.push(sha256 === SHA256_EMPTY ? 0 : statSync(this.blobPath(sha256), { throwIfNoEntry: false })?.size);
    }
    return out;
  }

  readBlob(sha256: string, start: number, end: number, chunkSize = 2 * 1024 * 1024): Readable {
    if (sha256 === SHA256_EMPTY || end <= start) return Readable.from([]);
    return readRange(this.blobPath(sha256), start, end, chunkSize);
  }

  async deleteBlob(sha256: string): Promise<void> {
    await rm(this.blobPath(sha256), { force: true });
  }

  async check(): Promise<void> {
    await this.prepare();
    // a file of this check's own: checks at once (heartbeats, readiness) unlinked each other's probe
    const probe = join(this.dataDir, `.probe-${process.pid}-${randomBytes(6).toString('hex')}`);
    const fh = await open(probe, 'w');
    await fh.close();
    await unlink(probe);
  }
}

class FsStagingFile implements StagingFile {
  constructor(
    readonly uploadId: string,
    private readonly fh: FileHandle,
    private readonly turn: (write: () => Promise<void>) => Promise<void> = (write) => write(),
  ) {}

  write(data: Buffer | readonly Buffer[], position: number, guard?: () => void): Promise<void> {
    return this.turn(async () => {
      guard?.();
      await this.writeAll(Buffer.isBuffer(data) ? [data] : data, position);
    });
  }

  /** One `pwritev` per round; a short write (or more buffers than IOV_MAX) goes on from where it stopped. */
  private async writeAll(data: readonly Buffer[], position: number): Promise<void> {
    let buffers = data.filter((b) => b.length > 0);
    while (buffers.length > 0) {
      const { bytesWritten } = await this.fh.writev(buffers, position);
      position += bytesWritten;
      let skip = bytesWritten;
      let i = 0;
      while (i < buffers.length && skip >= buffers[i].length) skip -= buffers[i++].length;
      buffers = buffers.slice(i);
      if (skip > 0) buffers[0] = buffers[0].subarray(skip);
    }
  }

  /** The same as sync: on disk every sync covers everything written. */
  syncAll(): Promise<number> {
    return this.sync();
  }

  async sync(): Promise<number> {
    // the size before the flush: a write landing during fdatasync may not be durable yet
    const { size } = await this.fh.stat();
    await this.fh.datasync();
    return size;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Stats between two turns of the event loop in blobSizes (~1.5 ms). */
const STAT_SLICE = 256;

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Streams `[start, end)` of a file, failing (never ending short) if the file holds less. */
function readRange(path: string, start: number, end: number, chunkSize: number): Readable {
  if (end <= start) return Readable.from([]);
  async function* checked(): AsyncGenerator<Buffer> {
    let got = 0;
    for await (const chunk of createReadStream(path, { start, end: end - 1, highWaterMark: chunkSize })) {
      got += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (got !== end - start) throw new InternalError(`${basename(path)}: asked for bytes [${start}, ${end}) but it holds ${start + got}`);
  }
  return Readable.from(checked(), { objectMode: false });
}
