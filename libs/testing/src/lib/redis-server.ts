import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import IORedis, { Cluster } from 'ioredis';
import { freePort, portFree } from './ports';
import { WAIT_MS, sleep } from './wait';

export interface TestRedis {
  url: string;
  /** A key prefix unique to this suite (matters when REDIS_URL points at a shared server). */
  prefix: string;
  stop(): Promise<void>;
}

let counter = 0;

function uniquePrefix(): string {
  return `t${process.pid}x${Date.now().toString(36)}x${counter++}`;
}

function redisServerOnPath(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * A real Redis for one test suite: a private `redis-server` on a free port when one is installed,
 * else the server at REDIS_URL (with a unique key prefix). Fails loudly when neither exists.
 * With FERRY_TEST_REDIS_CLUSTER=1, a private six-node Redis Cluster instead.
 */
export async function startTestRedis(): Promise<TestRedis> {
  // `npm test` runs the session, catalog, multipart and job suites a second time on a cluster
  if (process.env['FERRY_TEST_REDIS_CLUSTER'] === '1') return startTestRedisCluster();
  if (redisServerOnPath()) return startPrivateRedis();
  const url = process.env['REDIS_URL'];
  if (url) return { url, prefix: uniquePrefix(), stop: async () => undefined };
  throw new Error('tests need Redis: install redis-server (apt-get install redis-server) or set REDIS_URL');
}

async function startPrivateRedis(): Promise<TestRedis> {
  // Another process may take the free port before redis-server binds it: try another one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'ferry-redis-'));
    const child: ChildProcess = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const deadline = Date.now() + WAIT_MS;
    let up = false;
    while (!up && child.exitCode === null && Date.now() <= deadline) {
      up = await answersPing(port);
      if (!up) await sleep(50);
    }
    // answered, and by this child (not by a server that held the port, which made ours exit)
    if (up && child.exitCode === null) return privateRedis(child, port, dir);
    const timedOut = child.exitCode === null;
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    if (timedOut || attempt === 5) throw new Error(`redis-server did not start on port ${port}`);
  }
}

/**
 * Kills `child` when this process exits, so a suite that failed half-way (jest then force-exits,
 * skipping afterAll) leaves no redis-server behind.
 */
function killOnExit(child: ChildProcess): void {
  if (!exitHooked) process.once('exit', () => running.forEach((c) => c.kill('SIGKILL')));
  exitHooked = true;
  running.add(child);
  child.once('exit', () => running.delete(child));
}

const running = new Set<ChildProcess>();
let exitHooked = false;

function privateRedis(child: ChildProcess, port: number, dir: string): TestRedis {
  const url = `redis://127.0.0.1:${port}`;
  killOnExit(child);
  return {
    url,
    prefix: uniquePrefix(),
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A raw PING over TCP. (An ioredis client would do, but its connect timers outlive refused
 * attempts and keep jest from exiting.)
 */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

export interface TestRedisCluster extends TestRedis {
  /** `host:port` of every node (three masters, three replicas). */
  nodes: string[];
}

/**
 * A private six-node Redis Cluster on loopback (three masters, each with a replica), made with
 * `redis-server --cluster-enabled yes` and `redis-cli --cluster create`. Its `url` is a
 * `redis+cluster://` URL naming every node.
 */
export async function startTestRedisCluster(): Promise<TestRedisCluster> {
  if (!redisServerOnPath()) throw new Error('the Redis Cluster tests need redis-server and redis-cli (apt-get install redis-server)');
  // Another process may take a free port (or its cluster bus port, +10000) before a node binds it:
  // that node exits at once, and the cluster starts again on other ports.
  for (let attempt = 1; ; attempt++) {
    const started = await startClusterNodes();
    if (started.ok) return started.cluster;
    if (attempt === 5) throw new Error(started.reason);
  }
}

async function startClusterNodes(): Promise<{ ok: true; cluster: TestRedisCluster } | { ok: false; reason: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-redis-cluster-'));
  const ports: number[] = [];
  while (ports.length < 6) {
    const port = await freePort();
    if (!ports.includes(port) && port < 55536 && (await portFree(port + 10000))) ports.push(port); // the cluster bus uses port + 10000
  }
  const children = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--loglevel',
        'warning',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        '30000', // a busy machine must not make a node look failed
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    ),
  );
  children.forEach(killOnExit);
  const stop = async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + WAIT_MS;
    for (const [i, port] of ports.entries()) {
      // answered by this node (not by a server that held the port, which made ours exit)
      while (!(await answersPing(port)) || children[i].exitCode !== null) {
        if (children[i].exitCode !== null) {
          await stop();
          return { ok: false, reason: `redis-server (cluster node) exited at start on port ${port} (taken?)` };
        }
        if (Date.now() > deadline) throw new Error(`redis-server (cluster node) did not start on port ${port}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '1', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    // every node must agree that all slots are served before the suite starts
    while (
      !ports.every((p) =>
        spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout.includes('cluster_state:ok'),
      )
    ) {
      if (Date.now() > deadline + WAIT_MS) throw new Error('the Redis Cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
    return { ok: true, cluster: { url: `redis+cluster://${nodes.join(',')}`, nodes, prefix: uniquePrefix(), stop } };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Every key matching `pattern`, on one server or on every master of a cluster (KEYS alone asks one node). */
export async function allKeys(redis: IORedis | Cluster, pattern = '*'): Promise<string[]> {
  const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
  return (await Promise.all(servers.map((s) => s.keys(pattern)))).flat();
}
