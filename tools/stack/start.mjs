#!/usr/bin/env node
// `npm start`: installs dependencies if needed, builds the apps, finds or starts Redis, and runs
// the whole Ferry stack on the local defaults. Ctrl-C stops everything it started.
// Uses only Node's standard library so it can run before `npm ci`.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installIfNeeded } from './install.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The apps of the stack, in start order. */
export const APPS = ['ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker'];

const env = { ...process.env };
const redisUrl = new URL(env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const dataDir = isAbsolute(env.FERRY_DATA_DIR ?? '') ? env.FERRY_DATA_DIR : resolve(root, env.FERRY_DATA_DIR ?? 'data');
const children = [];
let stopping = false;

function log(msg) {
  console.log(`[ferry] ${msg}`);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) {
    log(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

/** Sends PING and resolves true on +PONG (or an auth error: something Redis-like answers). */
function redisAnswers(url, timeoutMs = 1000) {
  return new Promise((done) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) });
    const finish = (ok) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => finish(/^(\+PONG|-NOAUTH)/.test(d.toString())));
  });
}

function onPath(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

async function ensureRedis() {
  if (await redisAnswers(redisUrl)) {
    log(`using Redis at ${redisUrl.href}`);
    return;
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(redisUrl.hostname);
  if (!loopback || !onPath('redis-server')) {
    log(`nothing answers at REDIS_URL=${redisUrl.href}.`);
    log('Start Redis there, point REDIS_URL at a running Redis, or install redis-server');
    log('(Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run npm start again.');
    process.exit(1);
  }
  const dir = join(dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const port = redisUrl.port || '6379';
  log(`starting a private redis-server on port ${port} (append-only, data in ${dir})`);
  const child = spawn(
    'redis-server',
    [
      '--port',
      port,
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  attach('redis', child);
  for (let i = 0; i < 100; i++) {
    if (await redisAnswers(redisUrl)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  log('redis-server did not come up');
  await stop(1);
}

function attach(name, child) {
  children.push({ name, child });
  const prefix = `${name.padEnd(16)}| `;
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = '';
    stream?.on('data', (d) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) console.log(prefix + line);
    });
  }
  child.on('exit', (code, signal) => {
    if (stopping) return;
    log(`${name} exited (${code ?? signal}); stopping the stack`);
    void stop(1);
  });
}

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  // Apps first (they finish in-flight work on SIGTERM), Redis last.
  for (const { name, child } of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    log(`${name} stopped`);
  }
  process.exit(code);
}

async function main() {
  installIfNeeded();
  log('building the apps');
  run(process.execPath, [
    join(root, 'node_modules', 'nx', 'dist', 'bin', 'nx.js'),
    'run-many',
    '-t',
    'build',
    '-p',
    ...APPS,
    'cli',
    '--output-style=static',
  ]);
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  await ensureRedis();
  for (const app of APPS) {
    const child = spawn(process.execPath, ['--enable-source-maps', join(root, 'dist', 'apps', app, 'main.js')], {
      cwd: root,
      env: { ...env, FERRY_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: Ctrl-C reaches only this script, which stops each app with one SIGTERM
      // (a second signal would make an app skip its graceful shutdown).
      detached: true,
    });
    attach(app, child);
  }
  const host = env.FERRY_HOST ?? '127.0.0.1';
  log(`Ferry is starting (Ctrl-C stops):`);
  log(
    `  gRPC                ${host}:${env.FERRY_GRPC_PORT ?? 50051}  (ByteStream, GCS v2, REAPI cache; metrics http://${host}:${env.FERRY_GRPC_METRICS_PORT ?? 8083}/metrics)`,
  );
  log(
    `  Bazel HTTP cache    http://${host}:${env.FERRY_CACHE_HTTP_PORT ?? 8084}  (--remote_cache=http://${host}:${env.FERRY_CACHE_HTTP_PORT ?? 8084}/<instance>)`,
  );
  log(`  multipart REST API  http://${host}:${env.FERRY_MULTIPART_PORT ?? 8081}/file/multipart  (OpenAPI at /docs)`);
  log(
    `  object API          http://${host}:${env.FERRY_OBJECT_PORT ?? 8080}/api/object/v1  (Taskcluster rootUrl http://${host}:${env.FERRY_OBJECT_PORT ?? 8080})`,
  );
  log(`  worker health       http://${host}:${env.FERRY_WORKER_PORT ?? 8082}/healthz`);
  log(`  the ferry command   npx ferry upload <file> <name>  (npx ferry --help)`);
}

main().catch((err) => {
  console.error(err);
  void stop(1);
});
