import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { crc32c } from '@node-rs/crc32';
import { InternalError } from '@ferry/errors';
import type { RecordedDigests } from '@ferry/sessions';

/** The digests Ferry computes (crc32c as 8 hex digits, the others lowercase hex). */
export type DigestAlgorithm = 'sha256' | 'md5' | 'crc32c' | 'sha512';

/**
 * Whole-content digests. sha256 always (the content address); the others only where a protocol
 * needs them or its client declared them (digests by need: md5 alone costs ~1.4 CPU-s/GiB). The
 * same shape the session store records when publishing begins.
 */
export type Digests = RecordedDigests;

/** The digests a stream needs besides sha256, which is always computed. */
export type DigestNeeds = readonly DigestAlgorithm[];

/** sha256 first, then each other needed algorithm once. */
export function algorithmsFor(needs: DigestNeeds): DigestAlgorithm[] {
  return ['sha256', ...new Set(needs.filter((a) => a !== 'sha256'))];
}

/** The digests besides sha256 that `declared` names. */
export function declaredDigests(declared: Partial<Record<DigestAlgorithm, string>>): DigestAlgorithm[] {
  return (['md5', 'crc32c', 'sha512'] as const).filter((a) => declared[a] !== undefined);
}

/** The declared digests `digests` lacks (a client declared them after the bytes were hashed). */
export function missingDigests(declared: Partial<Record<DigestAlgorithm, string>>, digests: Digests): DigestAlgorithm[] {
  return declaredDigests(declared).filter((a) => digests[a] === undefined);
}

/** Computes sha256 and the needed digests of a byte stream fed in order. */
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
  private readonly hashes: [DigestAlgorithm, ReturnType<typeof createHash>][] = [];
  private crc?: number;

  constructor(needs: DigestNeeds = []) {
    for (const algo of algorithmsFor(needs)) {
      if (algo === 'crc32c') this.crc = 0;
      else this.hashes.push([algo, createHash(algo)]);
    }
  }

  update(chunk: Buffer): void {
    for (const [, h] of this.hashes) h.update(chunk);
    if (this.crc !== undefined) this.crc = crc32c(chunk, this.crc);
  }

  async digest(): Promise<Digests> {
    const digests = Object.fromEntries(this.hashes.map(([algo, h]) => [algo, h.digest('hex')])) as unknown as Digests;
    if (this.crc !== undefined) digests.crc32c = crc32cHex(this.crc);
    return digests;
  }

  dispose(): void {
    // nothing held
  }
}

/**
 * Hashing a large upload can cost more CPU than receiving and writing it (md5 ~1.4 s/GiB and it
 * cannot be vectorised, sha512 ~1.5, sha256 ~0.6 s/GiB with SHA-NI, crc32c ~0.1 s/GiB with SSE4.2):
 * hence digests by need, and a small pool of worker threads computes a stream's digests while the
 * event loop keeps receiving and writing bytes.
 * Chunks move to the thread without a copy (their ArrayBuffer is transferred), and the thread runs
 * all digests over one cache-sized slice before the next: each byte then comes from memory once,
 * not once per digest (measured: ~2 CPU-seconds per GiB less than sha256 and crc32c on the event
 * loop with md5 on the thread, each reading whole 2 MiB messages from memory).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { crc32c } = require('node:module').createRequire(workerData.crc32cFrom)('@node-rs/crc32');
// Chunks arrive as transferred ArrayBuffers, freed only when this isolate collects garbage. It
// allocates almost nothing on its own heap, so V8 would let ~64 MiB of dead chunks pile up before
// collecting; a young-generation collection every 4 MiB keeps that bounded (a scavenge of an
// almost empty heap costs well under a millisecond; every 16 MiB, ingest-grpc peaked ~10 MiB higher
// in bench:bytestream, at the same throughput).
require('node:v8').setFlagsFromString('--expose-gc');
const collect = require('node:vm').runInNewContext('gc');
const COLLECT_EVERY = 4 * 1024 * 1024;
// Every digest of a slice while it is in the core's L2 cache.
const SLICE = 512 * 1024;
let sinceCollect = 0;
const states = new Map();
class Crc32c {
  constructor(crc) { this.crc = crc || 0; }
  update(data) { this.crc = crc32c(data, this.crc); }
  digest() { return (this.crc >>> 0).toString(16).padStart(8, '0'); }
  save() { return this.crc; }
}
// md5 and sha256 of a stream whose state is saved (StreamDigests): OpenSSL's state through Ferry's
// native addon, the same build the parent loaded (libs/uploads resumable-hash.ts saves and loads it)
let addon;
class Resumable {
  constructor(path, algo, from) {
    if (!addon) { const m = { exports: {} }; process.dlopen(m, path); addon = m.exports; }
    this.state = from ? Buffer.from(from) : addon.init(algo);
  }
  update(data) { addon.updateSync(this.state, data); }
  digest() { return addon.digest(this.state).toString('hex'); }
  save() { return new Uint8Array(this.state); }
}
const hasherOf = (a, m) => {
  const from = m.from ? m.from[a] : undefined;
  if (a === 'crc32c') return new Crc32c(from);
  if (m.addon && (a === 'md5' || a === 'sha256')) return new Resumable(m.addon, a, from);
  return createHash(a);
};
parentPort.on('message', (m) => {
  if (m.op === 'start') {
    states.set(m.id, m.algos.map((a) => [a, hasherOf(a, m)]));
  } else if (m.op === 'update') {
    const hashes = states.get(m.id);
    const data = m.data;
    m.data = undefined;
    if (hashes) {
      for (let at = 0; at < data.length; at += SLICE) {
        const slice = data.subarray(at, at + SLICE);
        for (const [, h] of hashes) h.update(slice);
      }
    }
    sinceCollect += data.length;
    if (sinceCollect >= COLLECT_EVERY) { sinceCollect = 0; collect({ type: 'minor' }); }
    parentPort.postMessage({ id: m.id, op: 'ack', bytes: data.length });
  } else if (m.op === 'digest') {
    const hashes = states.get(m.id) || [];
    states.delete(m.id);
    parentPort.postMessage({ id: m.id, op: 'digest', digests: Object.fromEntries(hashes.map(([a, h]) => [a, h.digest('hex')])) });
  } else if (m.op === 'save') {
    // after every update posted before: the states of exactly what the stream was fed
    let saved = {};
    for (const [a, h] of states.get(m.id) || []) {
      if (!h.save) { saved = null; break; }
      saved[a] = h.save();
    }
    parentPort.postMessage({ id: m.id, op: 'saved', states: saved });
  } else if (m.op === 'dispose') {
    states.delete(m.id);
  }
});
`;

interface WorkerReply {
  id: number;
  op: 'ack' | 'digest' | 'saved';
  bytes?: number;
  digests?: Record<string, string>;
  states?: ThreadStates | null;
}

/**
 * The states of a pool thread's digests, as it takes and hands them back: md5's and sha256's the
 * bytes of the native addon's state (see NativeStates), crc32c's its value.
 */
export type ThreadStates = Partial<Record<DigestAlgorithm, Uint8Array | number>>;

/** How a pool thread's digests can be saved and continued (HashPool.offloaded). */
export interface ResumableOptions {
  /** The native addon's file: md5 and sha256 are OpenSSL states through it (NativeStates.addonPath). */
  addonPath: string;
  /** Where the digests start: the states another stream saved (each algorithm absent here starts at byte 0). */
  from?: ThreadStates;
}

/** Digests computed on a pool thread; same ownership and backpressure contract as StreamHasher. */
export interface OffloadedHasher<A extends DigestAlgorithm> {
  update(chunk: Buffer): Promise<void> | void;
  digest(): Promise<Record<A, string>>;
  /**
   * The states of the digests after every update so far (the digests go on); undefined when one
   * of them cannot be saved (sha512; md5 and sha256 of a hasher made without ResumableOptions).
   */
  save(): Promise<ThreadStates | undefined>;
  dispose(): void;
}

interface Stream {
  worker: number;
  outstanding: number;
  waiters: (() => void)[];
  /** Takes the answer to the digest or save asked (one at a time), or a lost worker's end. */
  onAnswer?: (r: WorkerReply) => void;
  failure?: Error;
}

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly streams = new Map<number, Stream>();
  private nextId = 1;
  private closing = false;

  /** @param maxOutstandingBytes bytes a stream may have queued at its worker before `update` waits. */
  constructor(
    size = Math.max(1, Math.min(4, availableParallelism() - 1)),
    private readonly maxOutstandingBytes = 4 * 1024 * 1024,
  ) {
    for (let i = 0; i < size; i++) this.workers.push(this.spawn(i));
  }

  private spawn(slot: number): Worker {
    // the thread resolves the native crc32c module from here (an eval'd thread would from the cwd)
    const w = new Worker(WORKER_SOURCE, { eval: true, name: `ferry-hash-${slot}`, workerData: { crc32cFrom: __filename } });
    w.unref();
    w.on('message', (r: WorkerReply) => this.onReply(r));
    w.on('error', (err) => this.onWorkerLost(slot, w, err));
    w.on('exit', (code) => this.onWorkerLost(slot, w, new Error(`hash worker exited with code ${code}`)));
    return w;
  }

  /** A worker died: its streams fail (their uploads stay resumable), a fresh worker takes the slot. */
  private onWorkerLost(slot: number, worker: Worker, cause: Error): void {
    if (this.closing || this.workers[slot] !== worker) return;
    this.workers[slot] = this.spawn(slot);
    for (const s of this.streams.values()) {
      if (s.worker !== slot) continue;
      s.failure = new InternalError(`hashing failed: ${cause.message}`);
      s.waiters.splice(0).forEach((w) => w());
      s.onAnswer?.({ id: 0, op: 'digest' });
    }
  }

  private onReply(r: WorkerReply): void {
    const s = this.streams.get(r.id);
    if (!s) return;
    if (r.op === 'ack') {
      s.outstanding -= r.bytes ?? 0;
      if (s.outstanding <= this.maxOutstandingBytes) s.waiters.splice(0).forEach((w) => w());
    } else {
      s.onAnswer?.(r);
    }
  }

  /** sha256 and the needed digests on a pool thread. */
  hasher(needs: DigestNeeds = []): StreamHasher {
    const hasher = this.offloaded(algorithmsFor(needs));
    return { ...hasher, digest: async () => (await hasher.digest()) as unknown as Digests };
  }

  /**
   * The given digests of stored bytes (a staging object or blob read back), in one pass on a pool
   * thread; `beforeChunk` may stop it by throwing (a lease that may have lapsed).
   */
  async digestOf<A extends DigestAlgorithm>(
    algos: A[],
    chunks: AsyncIterable<unknown>,
    beforeChunk: () => void = () => undefined,
  ): Promise<Record<A, string>> {
    const hasher = this.offloaded(algos);
    try {
      for await (const chunk of chunks) {
        beforeChunk();
        await hasher.update(chunk as Buffer);
      }
      return await hasher.digest();
    } finally {
      hasher.dispose();
    }
  }

  /**
   * The given digests on a pool thread (one thread per stream, so their order is kept); with
   * `resumable`, md5 and sha256 are native states that `save` hands back, continued from `from`.
   */
  offloaded<A extends DigestAlgorithm>(algos: A[], resumable?: ResumableOptions): OffloadedHasher<A> {
    const id = this.nextId++;
    const slot = id % this.workers.length;
    const stream: Stream = { worker: slot, outstanding: 0, waiters: [] };
    this.streams.set(id, stream);
    this.workers[slot].postMessage({ op: 'start', id, algos, addon: resumable?.addonPath, from: resumable?.from });
    let done = false;
    const finish = () => {
      done = true;
      this.streams.delete(id);
    };
    const check = () => {
      if (stream.failure) throw stream.failure;
      if (done) throw new InternalError('hasher already finished');
    };
    /** Asks the thread for the digests (`digest`: then the stream ends) or their states (`save`). */
    const ask = <T>(op: 'digest' | 'save', answer: (r: WorkerReply) => T) =>
      new Promise<T>((resolve, reject) => {
        check();
        if (stream.onAnswer) throw new InternalError(`hasher asked to ${op} while it answers another question`);
        stream.onAnswer = (r) => {
          stream.onAnswer = undefined;
          if (op === 'digest') finish();
          if (stream.failure || (op === 'digest' ? !r.digests : r.op !== 'saved'))
            reject(stream.failure ?? new InternalError('hashing failed'));
          else resolve(answer(r));
        };
        this.workers[slot].postMessage({ op, id });
      });
    return {
      update: async (chunk: Buffer) => {
        check();
        stream.outstanding += chunk.length;
        // The chunk is ours (StreamHasher contract). If it is the only view of its own ArrayBuffer
        // (a gRPC message, a file read), hand the memory to the worker without copying; otherwise
        // (a slice of a shared buffer) transfer a copy. Cloning would copy the whole ArrayBuffer.
        const exclusive = chunk.length >= 64 * 1024 && chunk.buffer.byteLength - chunk.length <= 4096;
        const data = exclusive ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length) : new Uint8Array(chunk);
        this.workers[slot].postMessage({ op: 'update', id, data }, [data.buffer as ArrayBuffer]);
        if (stream.outstanding > this.maxOutstandingBytes) await new Promise<void>((resolve) => stream.waiters.push(resolve));
        check();
      },
      digest: () => ask('digest', (r) => r.digests as Record<A, string>),
      save: () => ask('save', (r) => r.states ?? undefined),
      dispose: () => {
        if (done) return;
        // wake an update() waiting for acks: they are no longer routed to this stream
        stream.failure ??= new InternalError('hashing was cancelled');
        stream.waiters.splice(0).forEach((w) => w());
        stream.onAnswer?.({ id: 0, op: 'digest' });
        finish();
        this.workers[slot].postMessage({ op: 'dispose', id });
      },
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
