/**
 * The load run: `users` clients at once, each uploading one file after another for `durationMs`
 * through a face drawn at random (ByteStream, REAPI CAS, GCS WriteObject and BidiWriteObject,
 * multipart parts, object API PUT, tus), of a size drawn from SIZES, against one FerryStack, while
 * `kills` kill (SIGKILL) and restart replicas. Each upload goes as a client goes: start, send half,
 * ask how far the server got, finish (the rest, then the verified publication), retrying what a
 * lost replica makes fail (the connection, UNAVAILABLE, ABORTED while a killed writer's lease
 * lapses, 5xx) from where the server says it is.
 *
 * What it checks, besides counting and timing:
 *   - no acknowledged byte goes back: a status call never answers less than the server already
 *     acknowledged for that upload (a send's answer, an earlier status);
 *   - nothing acknowledged is lost: every upload whose finish was answered reads back, after the
 *     run, over ByteStream Read with its sha256, and the catalog records that sha256;
 *   - no process exits but the ones killed on purpose.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { findWorkspaceRoot } from '@ferry/config';
import type { ByteStreamClient, StorageClient } from '@ferry/protocol';
import {
  AppName,
  FaceContext,
  FaceError,
  FERRY_APPS,
  FaceUpload,
  FerryStack,
  UploadFace,
  bearer,
  byteStreamClient,
  hawkHeader,
  readBytes,
  sleep,
  storageClient,
  uploadFaces,
} from '@ferry/testing';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Sizes, as [share, smallest, largest]: most files small, some of several parts, a few large. */
const SIZES: [number, number, number][] = [
  [0.5, 1 * KiB, 256 * KiB],
  [0.3, 256 * KiB, 4 * MiB],
  [0.15, 4 * MiB, 16 * MiB],
  [0.05, 16 * MiB, 40 * MiB],
];

/** What a status call and a start are, per face, in the protocol's own words (absent: the face has none). */
const CALLS: Record<UploadFace['name'], { status?: string; start?: string }> = {
  bytestream: { status: 'QueryWriteStatus (ByteStream)' },
  reapi: { status: 'QueryWriteStatus (ByteStream)' },
  gcs: { status: 'QueryWriteStatus (GCS)', start: 'StartResumableWrite (GCS)' },
  gcsBidi: { status: 'QueryWriteStatus (GCS)', start: 'StartResumableWrite (GCS)' },
  multipart: { status: 'GET upload status (multipart)', start: 'start (multipart POST)' },
  tus: { status: 'HEAD (tus)', start: 'create (tus POST)' },
  object: { start: 'createUpload (object API)' },
};

/** Failures a lost or restarting replica causes: the client tries again. */
const TRANSIENT = new Set(['CONNECTION', 'UNAVAILABLE', 'ABORTED', 'CANCELLED', 'DEADLINE_EXCEEDED', 'TIMEOUT']);
/** How long one step keeps trying through transient failures. */
const RETRY_FOR_MS = 60_000;

export interface Kill {
  /** After the run's start. */
  atMs: number;
  app: AppName;
  replica: number;
  /** How long it stays down before it is started again. */
  downMs: number;
}

export interface LoadOptions {
  stack: FerryStack;
  topology: string;
  users: number;
  durationMs: number;
  seed: number;
  kills: Kill[];
  /** Uploads read back at once after the run. */
  verifyConcurrency?: number;
}

export interface Latency {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface LoadReport {
  topology: string;
  users: number;
  durationMs: number;
  seed: number;
  /** From the first start until the last upload in flight at the end finished. */
  wallMs: number;
  uploads: number;
  bytes: number;
  throughputMBps: number;
  uploadsPerSecond: number;
  byFace: Record<string, { uploads: number; bytes: number }>;
  /** The clients' own calls, timed by the clients (their busy event loop included). */
  calls: Record<string, Latency>;
  /** Status calls and starts of the prober (tools/load/prober.mjs, on a thread of its own): the server's latency under the load. */
  probed: Record<string, Latency & { errors: number }>;
  /** Transient failures retried, by code. */
  retries: Record<string, number>;
  /** Uploads that failed for good (the face, the step, the error). */
  failures: string[];
  /** Status answers below what the server had acknowledged. */
  regressions: string[];
  /** Finished uploads read back whole with their sha256. */
  verified: number;
  /** Finished uploads that did not read back whole. */
  lost: string[];
  kills: string[];
  /** Exits nobody asked for. */
  crashes: string[];
  /** CPU seconds during the run: this process (the clients) and each kind of child process (every replica's together). */
  cpuSeconds: Record<string, number>;
  /** The clients' own event loop delay (what the client process adds to every latency above). */
  clientLoopDelay: { p50Ms: number; p99Ms: number; maxMs: number };
  /** The prober's event loop delay, p99: small, or its timings include its own lag too. */
  proberLoopDelayP99Ms: number;
}

interface Finished {
  name: string;
  face: string;
  size: number;
  sha256: string;
}

/** A small seeded generator (mulberry32): the run's choices are the seed's. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function drawSize(rand: () => number): number {
  let r = rand();
  for (const [share, low, high] of SIZES) {
    if (r < share) return Math.floor(low + rand() * (high - low));
    r -= share;
  }
  return SIZES[0][1];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function latency(values: number[]): Latency {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50Ms: +percentile(sorted, 50).toFixed(1),
    p99Ms: +percentile(sorted, 99).toFixed(1),
    maxMs: +(sorted[sorted.length - 1] ?? 0).toFixed(1),
  };
}

interface ProbeResult {
  samples: Record<string, number[]>;
  errors: Record<string, number>;
  loopDelayP99Ms: number;
}

/** tools/load/prober.mjs on a worker thread, once its own uploads are made; `stop()` gives its timings. */
async function startProber(stack: FerryStack): Promise<{ stop(): Promise<ProbeResult> }> {
  const script = join(findWorkspaceRoot(__dirname) ?? process.cwd(), 'tools', 'load', 'prober.mjs');
  const worker = new Worker(script, {
    workerData: { grpcAddress: stack.grpcAddress, multipartBase: stack.multipartBase, intervalMs: 25 },
  });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the prober exited (code ${code}) before it was ready`)));
  });
  return {
    stop: async () => {
      const result = new Promise<ProbeResult>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      worker.postMessage('stop');
      const out = await result;
      await worker.terminate();
      return out;
    },
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** One client's view of the stack: its own gRPC channels (one connection each, as separate clients have), the stack's HTTP bases. */
function clientContext(stack: FerryStack): FaceContext & { close(): void } {
  let bs: ByteStreamClient | undefined;
  let st: StorageClient | undefined;
  return {
    byteStream: () => (bs ??= byteStreamClient(stack.grpcAddress)),
    storage: () => (st ??= storageClient(stack.grpcAddress)),
    multipartBase: stack.multipartBase,
    objectBase: stack.objectBase,
    close: () => {
      bs?.close();
      st?.close();
    },
  };
}

/** What a child process of this one is, by its command line: an app, a balancer, redis-server, s3rver. */
function kindOf(cmdline: string): string {
  const app = /dist\/apps\/([a-z-]+)\/main\.js/.exec(cmdline);
  if (app) return app[1];
  if (cmdline.includes('balancer.mjs')) return 'balancers';
  if (cmdline.includes('redis-server')) return 'redis-server';
  return cmdline.split('\0')[0].split('/').pop() ?? 'other';
}

/**
 * CPU time of this process's children, sampled from /proc every second (a killed replica keeps its
 * last sample), summed by kind: where the machine's time went.
 */
function childCpu(): { stop(): Record<string, number> } {
  const tick = 100; // USER_HZ on Linux
  /** By pid: its kind, its CPU seconds at the run's start (0 for a process started during it), at the last sample. */
  const seen = new Map<number, { kind: string; base: number; seconds: number }>();
  let starting = true;
  const sample = () => {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[1]) !== process.pid) continue;
        const seconds = (Number(fields[11]) + Number(fields[12])) / tick;
        const known = seen.get(Number(entry));
        if (known) known.seconds = seconds;
        else
          seen.set(Number(entry), { kind: kindOf(readFileSync(`/proc/${entry}/cmdline`, 'utf8')), base: starting ? seconds : 0, seconds });
      } catch {
        // it ended between the listing and the read
      }
    }
  };
  sample();
  starting = false;
  const timer = setInterval(sample, 1000);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      const out: Record<string, number> = {};
      for (const e of seen.values()) out[e.kind] = +((out[e.kind] ?? 0) + e.seconds - e.base).toFixed(1);
      return out;
    },
  };
}

/** The sha256 the catalog records for `name` (the object API's metadata: every face's uploads are in the one catalog). */
async function catalogSha256(stack: FerryStack, name: string): Promise<string | undefined> {
  const url = `${stack.objectBase}/api/object/v1/metadata/${encodeURIComponent(name)}`;
  const res = await fetch(url, { headers: { authorization: hawkHeader(url, 'GET', 'dev', 'dev-secret') } });
  if (res.status !== 200) throw new FaceError('object API metadata', `HTTP_${res.status}`, res.status, await res.text());
  return ((await res.json()) as { hashes?: { sha256?: string } }).hashes?.sha256;
}

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const { stack, users, durationMs } = options;
  const rand = random(options.seed);
  const pool = randomBytes(48 * MiB);
  const samples: Record<string, number[]> = {};
  const retries: Record<string, number> = {};
  const failures: string[] = [];
  const regressions: string[] = [];
  const finished: Finished[] = [];
  const killLog: string[] = [];
  const crashes: string[] = [];
  const planned = new Set<ChildProcess>();

  const watch = (app: AppName, replica: number) => {
    const child = stack.child(app, replica);
    child?.once('exit', (code, signal) => {
      if (!planned.has(child)) crashes.push(`${app}#${replica} (pid ${child.pid}) exited: code ${code}, signal ${signal}`);
    });
  };
  for (const app of FERRY_APPS) for (let r = 0; r < stack.replicas; r++) watch(app, r);

  const prober = await startProber(stack);
  const cpu = childCpu();
  const ownCpu = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const t0 = Date.now();
  const since = () => ((Date.now() - t0) / 1000).toFixed(1);
  const end = t0 + durationMs;
  const rampMs = Math.min(5000, durationMs / 6);

  async function timed<T>(label: string | undefined, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const out = await fn();
    if (label) (samples[label] ??= []).push(performance.now() - started);
    return out;
  }

  /** `fn` again while it fails transiently, for RETRY_FOR_MS. */
  async function retrying<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + RETRY_FOR_MS;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        const code = err instanceof FaceError ? err.code : undefined;
        const transient = err instanceof FaceError && (TRANSIENT.has(err.code) || (err.status ?? 0) >= 500);
        if (!transient || Date.now() > deadline) throw err;
        retries[code as string] = (retries[code as string] ?? 0) + 1;
        await sleep(200 + Math.floor(Math.random() * 300));
      }
    }
  }

  async function uploadOne(face: UploadFace, size: number): Promise<void> {
    const content = Buffer.allocUnsafe(size);
    const at = Math.floor(rand() * (pool.length - size));
    pool.copy(content, 0, at, at + size);
    randomBytes(Math.min(32, size)).copy(content); // each file its own
    const calls = CALLS[face.name];
    let step = 'start';
    try {
      const upload: FaceUpload = await retrying(() => timed(calls.start, () => face.begin(content)));
      /** The most the server acknowledged holding for this upload. */
      let acked = 0;
      const status = async () => {
        const got = await timed(calls.status, () =>
          upload.persisted().catch((err) => {
            // a generic ByteStream name nothing was written to yet is NOT_FOUND: its clients start at 0
            if (face.name === 'bytestream' && acked === 0 && err instanceof FaceError && err.code === 'NOT_FOUND') return 0;
            throw err;
          }),
        );
        if (got < acked) regressions.push(`${face.label}: status ${got} after ${acked} acknowledged (${since()} s)`);
        acked = Math.max(acked, got);
        return got;
      };
      if (face.resumable && calls.status) {
        step = 'first half';
        const granule = Math.max(1, face.granule(stack.storageKind));
        const half = Math.floor(size / 2 / granule) * granule;
        if (half > 0) {
          await retrying(async () => {
            const from = await status();
            if (from < half) await upload.send(from, half).done;
            acked = Math.max(acked, half);
          });
        }
        step = 'status';
        await retrying(status);
      }
      step = 'finish';
      const name = await retrying(() => upload.finish());
      if (face.resumable && calls.status && face.name !== 'reapi') {
        // a finished upload still answers its status as whole (REAPI: its upload name is done with)
        step = 'status after finish';
        await retrying(status);
      }
      finished.push({ name, face: face.label, size, sha256: createHash('sha256').update(content).digest('hex') });
    } catch (err) {
      failures.push(`${face.label}, ${size} bytes, at ${step} (${since()} s): ${messageOf(err)}`);
    }
  }

  async function user(index: number): Promise<void> {
    // the clients arrive over the ramp, as users do (all at once, their first starts time each other's preparation)
    await sleep(Math.floor((index * rampMs) / users));
    const ctx = clientContext(stack);
    const faces = uploadFaces(ctx);
    try {
      while (Date.now() < end) await uploadOne(faces[Math.floor(rand() * faces.length)], drawSize(rand));
    } finally {
      ctx.close();
    }
  }

  const killed = options.kills.map(async (k) => {
    await sleep(k.atMs);
    const child = stack.child(k.app, k.replica);
    if (child) planned.add(child);
    await stack.kill(k.app, k.replica);
    killLog.push(`${k.app}#${k.replica} killed at ${since()} s`);
    await sleep(k.downMs);
    await stack.start(k.app, k.replica);
    watch(k.app, k.replica);
    killLog.push(`${k.app}#${k.replica} serving again at ${since()} s`);
  });

  await Promise.all([...Array.from({ length: users }, (_, i) => user(i)), ...killed]);
  const wallMs = Date.now() - t0;
  const probe = await prober.stop();
  loop.disable();
  const own = process.cpuUsage(ownCpu);
  const cpuSeconds = { clients: +((own.user + own.system) / 1e6).toFixed(1), ...cpu.stop() };

  // every finished upload, read back whole
  const lost: string[] = [];
  let verified = 0;
  const reader = clientContext(stack);
  const queue = [...finished];
  await Promise.all(
    Array.from({ length: options.verifyConcurrency ?? 8 }, async () => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        try {
          const { data } = await retrying(() =>
            readBytes(reader.byteStream(), f.name, { metadata: bearer() }).catch((err: { code?: number; details?: string }) => {
              throw new FaceError('ByteStream Read', err.code === 14 ? 'UNAVAILABLE' : String(err.code), undefined, err.details ?? '');
            }),
          );
          const sha256 = createHash('sha256').update(data).digest('hex');
          // the digest the catalog recorded, computed by the writers (across replicas: continued from saved states)
          const recorded = await catalogSha256(stack, f.name);
          if (data.length === f.size && sha256 === f.sha256 && recorded === f.sha256) verified++;
          else
            lost.push(
              `${f.face} ${f.name}: read ${data.length} bytes, sha256 ${sha256}, catalog sha256 ${recorded}; acknowledged ${f.size}, ${f.sha256}`,
            );
        } catch (err) {
          lost.push(`${f.face} ${f.name}: ${messageOf(err)}`);
        }
      }
    }),
  );
  reader.close();

  const byFace: LoadReport['byFace'] = {};
  for (const f of finished) {
    const e = (byFace[f.face] ??= { uploads: 0, bytes: 0 });
    e.uploads++;
    e.bytes += f.size;
  }
  const calls: Record<string, Latency> = {};
  for (const [label, values] of Object.entries(samples)) calls[label] = latency(values);
  const probed: LoadReport['probed'] = {};
  for (const label of new Set([...Object.keys(probe.samples), ...Object.keys(probe.errors)])) {
    probed[label] = { ...latency(probe.samples[label] ?? []), errors: probe.errors[label] ?? 0 };
  }
  const bytes = finished.reduce((n, f) => n + f.size, 0);
  return {
    topology: options.topology,
    users,
    durationMs,
    seed: options.seed,
    wallMs,
    uploads: finished.length,
    bytes,
    throughputMBps: +(bytes / 1e6 / (wallMs / 1000)).toFixed(1),
    uploadsPerSecond: +(finished.length / (wallMs / 1000)).toFixed(1),
    byFace,
    calls,
    probed,
    retries,
    failures,
    regressions,
    verified,
    lost,
    kills: killLog,
    crashes,
    cpuSeconds,
    clientLoopDelay: {
      p50Ms: +(loop.percentile(50) / 1e6).toFixed(1),
      p99Ms: +(loop.percentile(99) / 1e6).toFixed(1),
      maxMs: +(loop.max / 1e6).toFixed(1),
    },
    proberLoopDelayP99Ms: +probe.loopDelayP99Ms.toFixed(1),
  };
}

/** The report as the tables of the issue note. */
export function formatReport(r: LoadReport): string {
  const lines = [
    `## ${r.topology}: ${r.users} concurrent uploads for ${r.durationMs / 1000} s (seed ${r.seed})`,
    `${r.uploads} uploads finished, ${(r.bytes / MiB).toFixed(0)} MiB in ${(r.wallMs / 1000).toFixed(1)} s: ` +
      `${r.throughputMBps} MB/s, ${r.uploadsPerSecond} uploads/s; read back whole: ${r.verified}, lost: ${r.lost.length}, ` +
      `failed for good: ${r.failures.length}, status regressions: ${r.regressions.length}, crashes: ${r.crashes.length}`,
    '',
    '| face | uploads | MiB |',
    '|---|---|---|',
    ...Object.entries(r.byFace).map(([face, e]) => `| ${face} | ${e.uploads} | ${(e.bytes / MiB).toFixed(0)} |`),
    '',
    `Status calls and starts by the prober (a thread of its own, one call every 25 ms; its loop delay p99 ${r.proberLoopDelayP99Ms} ms):`,
    '',
    '| call | count | p50 ms | p99 ms | max ms | failed |',
    '|---|---|---|---|---|---|',
    ...Object.entries(r.probed).map(([call, l]) => `| ${call} | ${l.count} | ${l.p50Ms} | ${l.p99Ms} | ${l.maxMs} | ${l.errors} |`),
    '',
    'The same calls as the upload clients timed them (their own busy event loop included):',
    '',
    '| call | count | p50 ms | p99 ms | max ms |',
    '|---|---|---|---|---|',
    ...Object.entries(r.calls).map(([call, l]) => `| ${call} | ${l.count} | ${l.p50Ms} | ${l.p99Ms} | ${l.maxMs} |`),
    '',
    `CPU seconds: ${Object.entries(r.cpuSeconds)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}; ` +
      `the clients' event loop delay p50 ${r.clientLoopDelay.p50Ms} ms, p99 ${r.clientLoopDelay.p99Ms} ms, max ${r.clientLoopDelay.maxMs} ms`,
    `retried: ${
      Object.entries(r.retries)
        .map(([code, n]) => `${code} ${n}`)
        .join(', ') || 'nothing'
    }`,
    ...(r.kills.length ? [`kills: ${r.kills.join('; ')}`] : []),
    ...r.failures.slice(0, 20).map((f) => `failed: ${f}`),
    ...r.regressions.slice(0, 20).map((f) => `regression: ${f}`),
    ...r.lost.slice(0, 20).map((f) => `lost: ${f}`),
    ...r.crashes.map((f) => `crash: ${f}`),
  ];
  return lines.join('\n');
}
