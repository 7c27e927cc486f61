import type { StagingFile } from '@ferry/storage';

export interface BatchedWriterOptions {
  /** Called once with the first failure of a write or of `afterWrite`. */
  onFailure?: (err: unknown) => void;
  /** Bytes gathered before they are written (default 1 MiB). */
  batchBytes?: number;
  /**
   * Bytes received but not yet written (and handed on) before `push` waits (default 1 MiB: one
   * batch written while the next fills). A larger window buys nothing measurable and costs memory:
   * chunks that wait long survive V8's young-generation collections and are freed only by a full
   * one (measured: 4 MiB per stream raised multipart-api's peak RSS by ~40 MiB with 4 parts in
   * flight, tools/bench/peer.mjs).
   */
  maxInFlightBytes?: number;
}

/**
 * The write path every upload shares: a stream of chunks written in order from `start` into a
 * staging file, with a window of bytes in flight so that receiving, writing and hashing overlap.
 *
 * Network chunks are small (16-64 KiB): they are gathered into batches of `batchBytes` and each
 * batch written in one vectored write, without copying the chunks; a chunk of a quarter batch or
 * more is written at once, with whatever was gathered before it. Writes run one at a time, in
 * order: concurrent writes to one file only contend for its inode lock in the kernel (measured: CPU
 * burnt spinning, no gain). Each batch then goes to `afterWrite` once written, in order (a hashing
 * thread may take its chunks' memory).
 *
 * `push` resolves as soon as the window (`maxInFlightBytes`) has room: the caller keeps receiving
 * while earlier batches are written. After a failure nothing more is written; it is thrown by the
 * next `push`, `drain` or `finish`.
 */
export class BatchedWriter {
  private batch: Buffer[] = [];
  private batchLength = 0;
  /** Bytes submitted (written or on their way), from `start`. */
  private submitted = 0;
  private inFlight = 0;
  private readonly pending = new Set<Promise<void>>();
  private writtenSoFar: Promise<void> = Promise.resolve();
  private handedOnSoFar: Promise<void> = Promise.resolve();
  private failure?: { err: unknown };
  private readonly batchBytes: number;
  private readonly maxInFlightBytes: number;

  /**
   * @param afterWrite takes each batch (its chunks and their total length) once it is written, in
   *   order; what it returns is awaited before the batch leaves the window (its backpressure).
   * @param beforeWrite runs right before each write (after any wait behind earlier ones) and may
   *   refuse it by throwing: a writer whose lease may have lapsed must not touch staging.
   */
  constructor(
    private readonly file: StagingFile,
    private readonly start: number,
    private readonly afterWrite?: (batch: readonly Buffer[], length: number) => Promise<void> | void,
    private readonly beforeWrite?: () => void,
    private readonly options: BatchedWriterOptions = {},
  ) {
    this.batchBytes = options.batchBytes ?? 1024 * 1024;
    this.maxInFlightBytes = options.maxInFlightBytes ?? 1024 * 1024;
  }

  /** Bytes received so far (the next position is `start + received`). */
  get received(): number {
    return this.submitted + this.batchLength;
  }

  /**
   * Takes `chunk` and resolves when the window has room for more. The chunk is written as it is,
   * later: the caller must not change it afterwards.
   */
  async push(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    if (chunk.length === 0) return;
    this.batch.push(chunk);
    this.batchLength += chunk.length;
    // a large chunk (a gRPC message) gains nothing from waiting for more
    if (this.batchLength >= this.batchBytes || chunk.length >= this.batchBytes / 4) this.submitBatch();
    while (this.inFlight > this.maxInFlightBytes && this.pending.size > 0) await Promise.race(this.pending);
    this.throwIfFailed();
  }

  /** Writes what is gathered and waits until everything received is written and handed on. */
  async drain(): Promise<void> {
    this.submitBatch();
    await Promise.all([...this.pending]);
    this.throwIfFailed();
  }

  /** Writes what is left and waits for every write (not made durable: the caller syncs). Returns the bytes written. */
  async finish(): Promise<number> {
    await this.drain();
    return this.submitted;
  }

  /** Stops: drops what is gathered, waits for the writes in flight to end whatever their outcome. */
  async settle(): Promise<void> {
    this.batch = [];
    this.batchLength = 0;
    this.failure ??= { err: new Error('the writer was stopped') };
    await Promise.allSettled([...this.pending]);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.err;
  }

  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = { err };
    this.options.onFailure?.(err);
  }

  private submitBatch(): void {
    if (this.batchLength === 0) return;
    const { batch, batchLength: length, afterWrite, beforeWrite } = this;
    this.batch = [];
    this.batchLength = 0;
    const position = this.start + this.submitted;
    this.submitted += length;
    this.inFlight += length;
    const written = this.writtenSoFar.then(() => {
      this.throwIfFailed(); // after a failure nothing more is written
      beforeWrite?.();
      return this.file.write(batch, position, beforeWrite);
    });
    this.writtenSoFar = written.catch(() => undefined);
    const handedOn = afterWrite ? Promise.all([written, this.handedOnSoFar]).then(() => afterWrite(batch, length)) : written;
    const done: Promise<void> = handedOn.then(
      () => {
        this.inFlight -= length;
        this.pending.delete(done);
      },
      (err: unknown) => {
        this.inFlight -= length;
        this.pending.delete(done);
        this.fail(err);
      },
    );
    this.handedOnSoFar = done;
    this.pending.add(done);
  }
}
