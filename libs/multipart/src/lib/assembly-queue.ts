import type { Job, Queue, Worker } from 'bullmq';
import { ASSEMBLY_ATTEMPTS, AssembleMultipartPayload, AssembleMultipartResult, JOBS, QUEUES, assemblyJobId } from '@ferry/jobs';
import type { Redis } from '@ferry/redis';
import type { MultipartAssembler } from './assembler';

/** BullMQ, required when a queue or worker is made: ingest-grpc bundles this lib but uses neither. */
const bullmq = (): typeof import('bullmq') => require('bullmq');

type AssemblyJob = Job<AssembleMultipartPayload, AssembleMultipartResult>;

/** The producer side: makes sure exactly one assembly job exists for an upload that is completing. */
export class AssemblyQueue {
  private made?: Queue<AssembleMultipartPayload, AssembleMultipartResult>;

  /**
   * @param onError connection trouble (BullMQ retries by itself); without a listener Node would crash on it.
   * @param retries how often a failed assembly runs again, and after how long the first time (doubling).
   */
  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
    private readonly onError: (err: Error) => void = () => undefined,
    private readonly retries = { attempts: ASSEMBLY_ATTEMPTS, backoffMs: 1000 },
  ) {}

  /**
   * The BullMQ queue, made at its first use: a queue closed while its connection still initializes
   * (an app stopped soon after it started, before Redis, or a cluster, answered) drops its error
   * listeners and then emits the failed initialization as an unhandled 'error' (BullMQ 5.81), which
   * would crash the process. Once used, the connection is initialized.
   */
  private get queue(): Queue<AssembleMultipartPayload, AssembleMultipartResult> {
    if (!this.made) {
      this.made = new (bullmq().Queue)(QUEUES.assembly, { connection: this.connection, prefix: this.prefix });
      this.made.on('error', this.onError);
    }
    return this.made;
  }

  /**
   * Enqueues the upload's assembly (job id from the upload id, so repeated completes enqueue it
   * once), or revives it if it failed for good earlier (its retries ran out). With `delayMs` the job
   * waits that long first: the safety net of an assembly multipart-api runs itself, in case that
   * process dies; without, a job waiting so runs now.
   */
  async ensure(uploadId: string, delayMs = 0): Promise<void> {
    const jobId = assemblyJobId(uploadId);
    const existing = (await this.queue.getJob(jobId)) as AssemblyJob | undefined;
    if (existing) {
      const state = await existing.getState();
      if (state === 'delayed') {
        // two replicas may promote it at once: the one that comes second finds it no longer delayed
        if (delayMs === 0)
          await existing.promote().catch(async (err: unknown) => {
            if ((await existing.getState()) === 'delayed') throw err;
          });
        return;
      }
      if (state === 'failed') {
        // two replicas may revive it at once: the one that comes second finds it no longer failed
        await existing.retry('failed').catch(async (err: unknown) => {
          if ((await existing.getState()) === 'failed') throw err;
        });
        return;
      }
      if (state !== 'completed' && state !== 'unknown') return;
      // finished without settling the upload (cannot happen unless it was edited by hand): run again
      await existing.remove().catch(() => undefined);
    }
    await this.queue.add(
      JOBS.assembleMultipart,
      { uploadId },
      {
        jobId,
        ...(delayMs > 0 ? { delay: delayMs } : {}),
        attempts: this.retries.attempts,
        backoff: { type: 'exponential', delay: this.retries.backoffMs },
        removeOnComplete: { age: 24 * 3600, count: 10_000 },
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    );
  }

  /** The upload was settled without its job (by multipart-api): a job still waiting for its delay is dropped. */
  async discard(uploadId: string): Promise<void> {
    const job = (await this.queue.getJob(assemblyJobId(uploadId))) as AssemblyJob | undefined;
    if (job && (await job.getState()) === 'delayed') await job.remove().catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.made?.close();
  }
}

export interface AssemblyWorkerOptions {
  concurrency: number;
  /** Lock of a running job; a worker that dies holding one is replaced after about this long. */
  lockMs: number;
  onFailed?: (uploadId: string | undefined, err: Error) => void;
  onSettled?: (uploadId: string, result: AssembleMultipartResult, ms: number) => void;
  /** Connection trouble (BullMQ retries by itself); without a listener Node would crash on it. */
  onError?: (err: Error) => void;
}

/** The consumer side, run by the assembler worker (and by in-process tests). */
export class AssemblyWorker {
  private readonly worker: Worker<AssembleMultipartPayload, AssembleMultipartResult>;

  constructor(connection: Redis, prefix: string, assembler: MultipartAssembler, options: AssemblyWorkerOptions) {
    this.worker = new (bullmq().Worker)<AssembleMultipartPayload, AssembleMultipartResult>(
      QUEUES.assembly,
      async (job) => {
        if (job.name !== JOBS.assembleMultipart) throw new Error(`unknown job ${job.name}`);
        const started = Date.now();
        const result = await assembler.assemble(job.data.uploadId);
        if (!result) throw new Error(`the assembly of ${job.data.uploadId} stopped without settling it`); // (only with a deadline)
        options.onSettled?.(job.data.uploadId, result, Date.now() - started);
        return result;
      },
      {
        connection,
        prefix,
        concurrency: options.concurrency,
        lockDuration: options.lockMs,
        stalledInterval: Math.max(500, Math.floor(options.lockMs / 2)),
        maxStalledCount: ASSEMBLY_ATTEMPTS,
      },
    );
    this.worker.on('failed', (job, err) => {
      options.onFailed?.(job?.data.uploadId, err);
      // its last attempt (a job to be retried is 'delayed' by now): the upload must not wait forever
      if (job)
        void job
          .getState()
          .then(async (state) => {
            if (state === 'failed') await assembler.gaveUp(job.data.uploadId);
          })
          .catch((e: unknown) => options.onError?.(e as Error));
    });
    this.worker.on('error', (err) => options.onError?.(err));
  }

  /** Resolves once the worker is connected and taking jobs. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /** Stops taking jobs and waits for the running ones. */
  async close(): Promise<void> {
    await this.worker.close();
  }
}
