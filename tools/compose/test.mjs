#!/usr/bin/env node
// `npm run test:compose`: runs the real docker-compose.yml on this machine and drives it from the
// host (apps/compose-e2e/test/compose.e2e-spec.ts). Needs root (or a running Docker daemon), Docker
// (Debian: docker.io), a compose (the `docker compose` plugin or Debian's docker-compose) and, the
// first time, debootstrap; no container registry: the images the files name are made here
// (tools/compose/images.mjs). Steps:
//   1. start dockerd if none answers;  2. make the missing images;  3. build the ferry image
//   (compose's build:, deploy/Dockerfile) and bring the stack up, wait until every service is
//   healthy;  4. the test;  5. `down -v` (the stack and its volumes), also when something failed.
// Options: --keep (leave the stack up), --rebuild-images (make the stand-in images again).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEnv, ensureImages } from './images.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PROJECT = process.env.FERRY_COMPOSE_PROJECT || 'ferry-compose-test';
const PORTS = [6379, 9000, 9001, 50051, 8084, 8081, 8080, 8082].filter((p) => p !== 6379); // redis is not published
const keep = process.argv.includes('--keep');
const t0 = Date.now();
const timings = [];
const secs = (ms) => `${(ms / 1000).toFixed(0)} s`;

function log(msg) {
  console.log(`[compose] ${msg}`);
}
function fail(msg) {
  console.error(`[compose] ${msg}`);
  process.exit(1);
}
function step(name, fn) {
  const start = Date.now();
  const out = fn();
  const done = (v) => (timings.push([name, Date.now() - start]), log(`${name}: ${secs(Date.now() - start)}`), v);
  return out instanceof Promise ? out.then(done) : done(out);
}
function ok(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}
function which(cmd) {
  return ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')]
    .map((d) => join(d, cmd))
    .find((p) => existsSync(p));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** 1. A Docker daemon that answers: the running one, or dockerd started here (left running). */
async function ensureDocker() {
  if (!which('docker')) fail('docker (the client) is missing: apt-get install docker.io');
  if (ok('docker', ['info'])) return;
  const dockerd = which('dockerd');
  if (!dockerd) fail('no Docker daemon answers and dockerd is missing: apt-get install docker.io (as root)');
  if (process.getuid?.() !== 0)
    fail(`no Docker daemon answers and only root can start ${dockerd}: run this as root, or start Docker first`);
  mkdirSync(join(root, 'tmp'), { recursive: true });
  const logFile = join(root, 'tmp', 'dockerd.log');
  log(`starting ${dockerd} (log: ${logFile}; it keeps running afterwards)`);
  const child = spawn(dockerd, [], { detached: true, stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')] });
  let exited;
  child.on('exit', (code) => (exited = code));
  child.unref();
  for (let i = 0; i < 60; i++) {
    if (ok('docker', ['info'])) return;
    if (exited !== undefined) fail(`dockerd exited (${exited}): see ${logFile}`);
    await sleep(1000);
  }
  fail(`dockerd did not answer within 60 s: see ${logFile}`);
}

/** The compose command: the v2 plugin (`docker compose`), else Debian's docker-compose (v1). */
function composeCommand() {
  const file = join(root, 'docker-compose.yml');
  if (ok('docker', ['compose', 'version'])) return ['docker', 'compose', '-p', PROJECT, '-f', file];
  if (which('docker-compose')) return [which('docker-compose'), '-p', PROJECT, '-f', file];
  fail("no compose: install the docker compose plugin, or Debian's docker-compose (apt-get install docker-compose)");
}

function run(cmd, args, { env, allowFail = false, quiet = false } = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: quiet ? 'ignore' : 'inherit', env: { ...process.env, ...env } });
  if (!allowFail && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
  return r.status === 0;
}

function portTaken(port) {
  return new Promise((done) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), done(true)));
    s.once('error', () => done(false));
  });
}

/** Every service's container is healthy (each has a health check), or throws naming those that are not. */
async function waitHealthy(compose, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let states = [];
  for (;;) {
    const ids = spawnSync(compose[0], [...compose.slice(1), 'ps', '-q'], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .filter(Boolean);
    const r = spawnSync(
      'docker',
      ['inspect', '-f', '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}', ...ids],
      { encoding: 'utf8' },
    );
    states = r.stdout.trim().split('\n');
    if (ids.length >= 6 && states.every((s) => s.endsWith(' healthy'))) return;
    if (Date.now() > deadline) throw new Error(`not healthy within ${secs(timeoutMs)}: ${states.join('; ')}`);
    await sleep(2000);
  }
}

async function main() {
  await step('docker daemon', ensureDocker);
  const compose = composeCommand();
  log(`compose: ${compose.slice(0, compose.indexOf('-p')).join(' ')} (project ${PROJECT})`);
  // a stack of an earlier run that was kept (--keep) or interrupted goes first
  run(compose[0], [...compose.slice(1), 'down', '-v', '--remove-orphans'], { allowFail: true, quiet: true });
  const taken = [];
  for (const p of PORTS) if (await portTaken(p)) taken.push(p);
  if (taken.length) fail(`ports the compose file publishes are in use on this machine: ${taken.join(', ')}`);

  step('images', () => {
    const built = ensureImages({ log, rebuild: process.argv.includes('--rebuild-images') });
    log(built.length ? `made ${built.join(', ')}` : 'every image present (cached)');
  });
  let passed = false;
  try {
    step('build ferry:local', () => run(compose[0], [...compose.slice(1), 'build'], { env: buildEnv() }));
    await step('up, healthy', async () => {
      run(compose[0], [...compose.slice(1), 'up', '-d']);
      await waitHealthy(compose, 300_000);
    });
    passed = step('test', () =>
      run('npx', ['jest', '--config', 'apps/compose-e2e/jest.compose.config.ts', '--runInBand'], {
        env: { FERRY_COMPOSE: JSON.stringify(compose), NX_DAEMON: 'false' },
        allowFail: true,
      }),
    );
  } catch (err) {
    console.error(`[compose] ${err.message}`);
  } finally {
    if (!passed) run(compose[0], [...compose.slice(1), 'logs', '--no-color', '--tail', '60'], { allowFail: true });
    if (keep) log(`--keep: the stack stays up (${compose.join(' ')} down -v)`);
    else step('down -v', () => run(compose[0], [...compose.slice(1), 'down', '-v', '--remove-orphans'], { allowFail: true }));
  }
  log(`${passed ? 'PASSED' : 'FAILED'} in ${secs(Date.now() - t0)} (${timings.map(([n, ms]) => `${n} ${secs(ms)}`).join(', ')})`);
  process.exit(passed ? 0 : 1);
}

main().catch((err) => fail(err.stack ?? String(err)));
