import { performance } from 'node:perf_hooks';
import { ConcurrentWriterError } from '@ferry/errors';

/**
 * A writer's own view of its lease. The lease is renewed every third of its TTL, and the writer
 * knows it holds it, by its own clock, until 4/5 of the TTL after the last request that renewed it
 * was *sent* (a renewal, or a commit that renews). Writers check it right before every write to
 * staging, so one that stalled (a GC pause, Redis out of reach) never overwrites the bytes of a
 * successor that took the lease over meanwhile.
 */
export class LeaseKeeper {
  private validUntil: number;
  private failure?: unknown;
  private stopped = false;
  private readonly timer: NodeJS.Timeout;

  /**
   * @param renewInRedis renews the lease; rejects if it was lost
   * @param takenAt performance.now() just before the lease was asked for
   * @param onFailure told once when a background renewal fails
   */
  constructor(
    private readonly renewInRedis: () => Promise<void>,
    private readonly ttlMs: number,
    takenAt: number,
    private readonly lostMessage: string,
    private readonly onFailure: (err: unknown) => void = () => undefined,
  ) {
    this.validUntil = takenAt + this.safeMs;
    this.timer = setInterval(() => {
      this.renew().catch((err: unknown) => {
        if (this.failure !== undefined) return;
        this.failure = err;
        this.onFailure(err);
      });
    }, ttlMs / 3);
    this.timer.unref();
  }

  private get safeMs(): number {
    return (this.ttlMs * 4) / 5;
  }

  /** True while the lease is certainly ours. */
  get valid(): boolean {
    return performance.now() <= this.validUntil;
  }

  async renew(): Promise<void> {
    if (this.stopped) return;
    const sentAt = performance.now();
    await this.renewInRedis();
    this.extend(sentAt);
  }

  /** Another request that renews the lease (a commit), sent at `sentAt`, succeeded. */
  extend(sentAt: number): void {
    this.validUntil = Math.max(this.validUntil, sentAt + this.safeMs);
  }

  /** Throws unless the lease is certainly ours (or if a renewal failed). */
  check(): void {
    if (this.failure !== undefined) throw this.failure;
    if (!this.valid) throw new ConcurrentWriterError(this.lostMessage);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }
}
