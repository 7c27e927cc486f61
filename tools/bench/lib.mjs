// Shared pieces of the benchmarks: process sampling, statistics, Redis, server processes.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

import { root } from '../lib/bytestream.mjs';

export { bearer, grpc, loadByteStream, root } from '../lib/bytestream.mjs';

export const MiB = 1024 * 1024;

/** The built bundle of an app, from `BENCH_DIST` (another build's dist directory) or this checkout's dist. */
export function dist(app) {
  return join(process.env.BENCH_DIST ?? join(root, 'dist'), 'apps', app, 'main.js');
}
export const GiB = 1024 * MiB;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resident memory now and CPU seconds so far of a process, from /proc. */
export function procSample(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime
  return { rssMiB: rssKiB / 1024, cpuSeconds: ticks / 100, sysSeconds: Number(stat[12]) / 100, minorFaults: Number(stat[7]) };
}

/** procSample of several processes together (their sums): the replicas of one service. */
function procsSample(pids) {
  const all = pids.map(procSample);
  const sum = (field) => all.reduce((n, s) => n + s[field], 0);
  return { rssMiB: sum('rssMiB'), cpuSeconds: sum('cpuSeconds'), sysSeconds: sum('sysSeconds'), minorFaults: sum('minorFaults') };
}

/**
 * Samples a process's RSS every 20 ms while `fn` runs; returns fn's result, peak RSS and CPU used.
 * `pid` may be a list (replicas of one service): their CPU summed, the peak of their summed RSS.
 */
export async function measure(pid, fn) {
  const pids = Array.isArray(pid) ? pid : [pid];
  const start = procsSample(pids);
  let peak = start.rssMiB;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, procsSample(pids).rssMiB);
    } catch {
      // process gone
    }
  }, 20);
  const t0 = process.hrtime.bigint();
  try {
    const result = await fn();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const end = procsSample(pids);
    return {
      result,
      seconds,
      peakRssMiB: Math.max(peak, end.rssMiB),
      cpuSeconds: end.cpuSeconds - start.cpuSeconds,
      /** of cpuSeconds, in the kernel */
      sysSeconds: end.sysSeconds - start.sysSeconds,
      minorFaults: end.minorFaults - start.minorFaults,
    };
  } finally {
    clearInterval(timer);
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** A private redis-server on a free port (no persistence); `stop()` resolves once its port is free. */
export async function startRedis() {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('benchmarks need redis-server on the PATH (apt-get install redis-server)');
  }
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.includes('PONG')) break;
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      for (let i = 0; i < 100 && (await listening(port)); i++) await sleep(50);
    },
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function listening(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts a node process and waits until `ready()` resolves true. `BENCH_NODE_ARGS` (in the
 * environment or in `env`) are node flags NODE_OPTIONS refuses, e.g. `--cpu-prof`, space-separated.
 */
export async function startProcess(args, env, ready) {
  const merged = { ...process.env, ...env };
  const nodeArgs = (merged.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, ...args], {
    env: merged,
    stdio: ['ignore', process.env.BENCH_STDOUT ? 'inherit' : 'ignore', 'inherit'],
  });
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
    if (await ready().catch(() => false)) return child;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`${args.join(' ')} did not become ready`);
}

export function stopProcess(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** SIGTERM, then SIGKILL if the process has not exited within `ms`. */
export async function stopWithin(child, ms = 15000) {
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await stopProcess(child);
  clearTimeout(timer);
}

/** Peak resident memory of the process's whole life (VmHWM), MiB. */
export function hwmMiB(pid) {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

/** The sizes of every file under `dir` (recursively). */
export function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => statSync(join(e.parentPath ?? e.path, e.name)).size);
}

/** Runs `fn(i)` for i in 0..count-1, `concurrency` at a time. */
export async function inParallel(count, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) await fn(i);
    }),
  );
}

/**
 * Runs a benchmark's `main(onCleanup)`. The steps it registers with `onCleanup` run in reverse at
 * the end, after an error and on Ctrl-C; then `paths` are removed, and `work` if it is empty (another
 * benchmark's output stays). Exit status 1 after an error, 130 after a signal.
 */
export function runBenchmark(main, { paths = [], work } = {}) {
  const steps = [];
  let cleaned;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const fn of steps.reverse())
        await Promise.resolve()
          .then(fn)
          .catch((err) => console.error('cleanup:', err));
      for (const path of paths) rmSync(path, { recursive: true, force: true });
      try {
        if (work) rmdirSync(work);
      } catch {
        // not empty, or already gone
      }
    })());
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping`);
      cleanup().finally(() => process.exit(130));
    });
  }
  main((fn) => steps.push(fn))
    .then(
      () => cleanup(),
      async (err) => {
        console.error(err);
        await cleanup();
        process.exitCode = 1;
      },
    )
    .then(() => process.exit());
}

/** One request; resolves with status, headers and body text. `body` is a Buffer (sent with Content-Length). */
export function request(url, { method = 'GET', headers = {}, body, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        agent,
        headers: { ...headers, 'content-length': body ? body.length : 0 },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
