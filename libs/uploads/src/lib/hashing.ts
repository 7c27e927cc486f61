import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { crc32c } from '@node-rs/crc32';

/** Whole-content digests, lowercase hex; crc32c as 8 hex digits (big-endian). */
export interface Digests {
  sha256: string;
  md5: string;
  crc32c: string;
}

/** Computes sha256, md5 and crc32c of a byte stream fed in order. */
export interface StreamHasher {
  /**
   * Feeds the next chunk; resolves when the hasher can take more (backpressure).
   * Takes ownership of `chunk`: the caller must not use it afterwards (its memory may move to
   * another thread).
   */
  update(chunk: Buffer): Promise<void> | void;
  digest(): Promise<Digests>;
  /** Frees resources without producing a digest. */
  dispose(): void;
}

export function crc32cHex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

/** Hashes on the calling thread. Right for small payloads, where a thread hop costs more than hashing. */
export class InlineHasher implements StreamHasher {
  private readonly sha = createHash('sha256');
  private readonly md5 = createHash('md5');
  private crc = 0;

  update(chunk: Buffer): void {
    this.sha.update(chunk);
    this.md5.update(chunk);
    this.crc = crc32c(chunk, this.crc);
  }

  async digest(): Promise<Digests> {
    return { sha256: this.sha.digest('hex'), md5: this.md5.digest('hex'), crc32c: crc32cHex(this.crc) };
  }

  dispose(): void {
    // nothing held
  }
}

/**
 * sha256 and md5 together cost ~2 CPU-seconds per GiB, more than the rest of the ingest path. A
 * small pool of worker threads computes them so the event loop keeps receiving and writing bytes;
 * crc32c (hardware accelerated, ~6 GB/s) stays on the calling thread.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const states = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let s = states.get(m.id);
    if (!s) { s = { sha: createHash('sha256'), md5: createHash('md5') }; states.set(m.id, s); }
    s.sha.update(m.data);
    s.md5.update(m.data);
    parentPort.postMessage({ id: m.id, op: 'ack', bytes: m.data.length });
  } else if (m.op === 'digest') {
    const s = states.get(m.id) || { sha: createHash('sha256'), md5: createHash('md5') };
    states.delete(m.id);
    parentPort.postMessage({ id: m.id, op: 'digest', sha256: s.sha.digest('hex'), md5: s.md5.digest('hex') });
  } else if (m.op === 'dispose') {
    states.delete(m.id);
  }
});
`;

interface WorkerReply {
  id: number;
  op: 'ack' | 'digest';
  bytes?: number;
  sha256?: string;
  md5?: string;
}

interface Stream {
  outstanding: number;
  waiters: (() => void)[];
  onDigest?: (r: WorkerReply) => void;
}

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly streams = new Map<number, Stream>();
  private nextId = 1;

  /** @param maxOutstandingBytes bytes a stream may have queued at its worker before `update` waits. */
  constructor(
    size = Math.max(1, Math.min(4, availableParallelism() - 1)),
    private readonly maxOutstandingBytes = 8 * 1024 * 1024,
  ) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, name: `ferry-hash-${i}` });
      w.unref();
      w.on('message', (r: WorkerReply) => this.onReply(r));
      this.workers.push(w);
    }
  }

  private onReply(r: WorkerReply): void {
    const s = this.streams.get(r.id);
    if (!s) return;
    if (r.op === 'ack') {
      s.outstanding -= r.bytes ?? 0;
      if (s.outstanding <= this.maxOutstandingBytes) s.waiters.splice(0).forEach((w) => w());
    } else {
      s.onDigest?.(r);
    }
  }

  hasher(): StreamHasher {
    const id = this.nextId++;
    const worker = this.workers[id % this.workers.length];
    const stream: Stream = { outstanding: 0, waiters: [] };
    this.streams.set(id, stream);
    let crc = 0;
    let done = false;
    const finish = () => {
      done = true;
      this.streams.delete(id);
    };
    return {
      update: (chunk: Buffer) => {
        if (done) throw new Error('hasher already finished');
        crc = crc32c(chunk, crc);
        stream.outstanding += chunk.length;
        // The chunk is ours (StreamHasher contract). If it is the only view of its own ArrayBuffer
        // (a gRPC message, a file read), hand the memory to the worker without copying; otherwise
        // (a slice of a shared buffer) transfer a copy. Cloning would copy the whole ArrayBuffer.
        const exclusive = chunk.length >= 64 * 1024 && chunk.buffer.byteLength - chunk.length <= 4096;
        const data = exclusive ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length) : new Uint8Array(chunk);
        worker.postMessage({ op: 'update', id, data }, [data.buffer as ArrayBuffer]);
        if (stream.outstanding <= this.maxOutstandingBytes) return;
        return new Promise<void>((resolve) => stream.waiters.push(resolve));
      },
      digest: () =>
        new Promise<Digests>((resolve) => {
          stream.onDigest = (r) => {
            finish();
            resolve({ sha256: r.sha256 ?? '', md5: r.md5 ?? '', crc32c: crc32cHex(crc) });
          };
          worker.postMessage({ op: 'digest', id });
        }),
      dispose: () => {
        if (done) return;
        finish();
        worker.postMessage({ op: 'dispose', id });
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
