import type { StagingFile } from '@ferry/storage';

/**
 * Writes a stream of chunks in order from `start` into a staging file, gathered into batches of
 * `batchBytes` (network chunks are 16-64 KiB: fewer, larger writes), with one write in flight while
 * the next batch fills. A batch is written as it came, in one vectored write; with `afterWrite`
 * it is first joined into one buffer that, once written, goes to `afterWrite`, which takes
 * ownership of it (hashers may move its memory to another thread). `beforeWrite` may refuse a
 * write by throwing (a writer whose lease may have lapsed).
 */
export class BatchedWriter {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private written = 0;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: StagingFile,
    private readonly start: number,
    private readonly afterWrite: ((data: Buffer) => Promise<void> | void) | undefined,
    private readonly beforeWrite: () => void = () => undefined,
    private readonly batchBytesMax = 1024 * 1024,
  ) {}

  /** Bytes received so far. */
  get received(): number {
    return this.written + this.batchBytes;
  }

  async push(chunk: Buffer): Promise<void> {
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes >= this.batchBytesMax) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.batchBytes === 0) return;
    const { batch, batchBytes, afterWrite } = this;
    const position = this.start + this.written;
    this.written += batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    await this.pending;
    this.beforeWrite();
    // checked again when the write really starts: it may wait behind other writers of the file
    if (afterWrite) {
      // joined only for a consumer that takes the batch as one buffer
      const joined = batch.length === 1 ? batch[0] : Buffer.concat(batch, batchBytes);
      this.pending = this.file.write(joined, position, this.beforeWrite).then(() => afterWrite(joined));
    } else {
      this.pending = this.file.write(batch, position, this.beforeWrite);
    }
    // surface a failed write at the next flush or at finish, never as an unhandled rejection
    this.pending.catch(() => undefined);
  }

  /** Writes what is left and waits for every write (not made durable: the caller syncs). Returns the bytes written. */
  async finish(): Promise<number> {
    await this.flush();
    await this.pending;
    return this.written;
  }

  /** Waits for the write in flight to end, whatever its outcome (before giving up). */
  async settle(): Promise<void> {
    await this.pending.catch(() => undefined);
  }
}
