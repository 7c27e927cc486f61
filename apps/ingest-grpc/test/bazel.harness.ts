/**
 * What the real-Bazel specs share (bazel.e2e-spec.ts: Bazel 2.1 from npm; bazel42.e2e-spec.ts:
 * Debian's Bazel 4.2): a workspace of genrules, an ingest-grpc started for Bazel (instance `ci`, a CI
 * client with a bearer token), a runner of one Bazel binary with its own `--output_user_root`, and
 * the check that a build, `clean`, build again is served wholly from the remote cache with
 * byte-identical outputs: by the build's process summary ("INFO: N processes: ... remote cache hit")
 * and by its execution log (`--execution_log_json_file`: every spawn `remoteCacheHit`).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TempDir, TestPki, TestRedis, reapiClients, startBuiltApp, unaryCall, waitUntilReady } from '@ferry/testing';

export const INSTANCE = 'ci';
export const TOKEN = 'ci-token-for-bazel';

/** A Bazel binary and the startup options it needs besides the runner's own. */
export interface BazelBinary {
  /** What the spec names it by (`2.1.0`, `4.2.3+ds-9`). */
  version: string;
  path: string;
  startup: string[];
}

/**
 * A workspace of genrules in `dir` (written again over what is there, so one workspace and one Bazel
 * server serve several builds): a chain, a fan-in, and a 3 MiB output (several ByteStream messages).
 * `salt` goes into the commands, so a new salt makes new actions. Returns the outputs' names.
 */
export function writeWorkspace(dir: string, salt: string): string[] {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'WORKSPACE'), '');
  writeFileSync(
    join(dir, 'BUILD'),
    `
genrule(name = "greeting", outs = ["greeting.txt"], cmd = "echo 'hello from ${salt}' > $@")
genrule(name = "shout", srcs = [":greeting"], outs = ["shout.txt"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "numbers", outs = ["numbers.txt"], cmd = "seq 1 20000 > $@; echo ${salt} >> $@")
genrule(name = "big", srcs = [":numbers"], outs = ["big.bin"], cmd = "for i in $$(seq 1 28); do cat $< ; done > $@")
genrule(name = "bundle", srcs = [":shout", ":big"], outs = ["bundle.txt"], cmd = "cat $(location :shout) > $@; wc -c < $(location :big) >> $@")
`,
  );
  return ['greeting.txt', 'shout.txt', 'numbers.txt', 'big.bin', 'bundle.txt'];
}

export interface IngestForBazel {
  redis: TestRedis;
  data: TempDir;
  ports: { grpc: number; http: number; metrics?: number };
  /** TLS on both ports with this PKI's server certificate. */
  tls?: { pki: TestPki };
  /** FERRY_ANONYMOUS_SCOPES: what calls without credentials may do (Bazel 2.x sends none on ByteStream). */
  anonymousScopes?: string;
  /** More of the server's environment (FERRY_CACHE_MAX_BYTES...). */
  env?: Record<string, string>;
}

/** An ingest-grpc serving instance `ci` to the client with `TOKEN`; resolves once Capabilities answer. */
export async function startIngest(options: IngestForBazel): Promise<ChildProcess> {
  const { redis, data, ports, tls, anonymousScopes, env = {} } = options;
  const child = startBuiltApp(
    'ingest-grpc',
    {
      FERRY_GRPC_PORT: String(ports.grpc),
      FERRY_CACHE_HTTP_PORT: String(ports.http),
      ...(ports.metrics ? { FERRY_GRPC_METRICS_PORT: String(ports.metrics) } : {}),
      ...(tls ? { FERRY_GRPC_TLS_CERT: tls.pki.serverCert.path, FERRY_GRPC_TLS_KEY: tls.pki.serverKey.path } : {}),
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_LOG_LEVEL: 'warn',
      FERRY_REAPI_INSTANCES: INSTANCE,
      FERRY_REAPI_ZERO_RESUME: 'auto', // the default: Bazel 2.1 is told 0 for a broken upload
      FERRY_CLIENTS: JSON.stringify([
        { clientId: 'bazel-ci', accessToken: TOKEN, scopes: [`ferry:write:${INSTANCE}/*`, `ferry:read:${INSTANCE}/*`] },
      ]),
      // unset (not empty) when not given: calls without credentials are refused
      ...(anonymousScopes ? { FERRY_ANONYMOUS_SCOPES: anonymousScopes } : {}),
      ...env,
    },
    true,
  );
  const probe = reapiClients(
    `127.0.0.1:${ports.grpc}`,
    tls ? grpc.credentials.createSsl(tls.pki.ca.pem) : grpc.credentials.createInsecure(),
  );
  try {
    await waitUntilReady(
      child,
      () => unaryCall(probe.capabilities, 'GetCapabilities', { instance_name: INSTANCE }, new grpc.Metadata()).then(() => true),
      'ingest-grpc',
    );
  } finally {
    probe.close();
  }
  return child;
}

/** The flags of `--remote_cache=grpc://127.0.0.1:<port>` on instance `ci`. */
export const grpcCache = (port: number): string[] => [`--remote_cache=grpc://127.0.0.1:${port}`, `--remote_instance_name=${INSTANCE}`];

/** One spawn of an execution log (`--execution_log_json_file`; Bazel's SpawnExec, the fields read here). */
export interface SpawnExec {
  mnemonic: string;
  runner: string;
  remoteCacheHit?: boolean;
  listedOutputs?: string[];
}

/** A build's combined output and its execution log. */
export interface BuildResult {
  output: string;
  spawns: SpawnExec[];
}

/**
 * The spawns of an execution log. Bazel writes it as JSON objects one after the other (not an
 * array), so this splits at each top-level object's end, strings and escapes respected.
 */
export function readExecutionLog(path: string): SpawnExec[] {
  const text = readFileSync(path, 'utf8');
  const spawns: SpawnExec[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === '}' && --depth === 0) spawns.push(JSON.parse(text.slice(start, i + 1)) as SpawnExec);
  }
  if (depth !== 0 || inString) throw new Error(`${path}: truncated execution log`);
  return spawns;
}

/**
 * "INFO: N processes: ..." of a build: the processes other than Bazel's internal ones (Bazel 4
 * counts those too: "7 processes: 2 internal, 5 remote cache hit."; 2.1 does not) and how many of
 * them were remote cache hits.
 */
export function processes(output: string): { total: number; remoteHits: number } {
  const line = /INFO: (\d+) process(?:es)?(?:: ([^\n]*))?/.exec(output);
  if (!line) throw new Error(`no process summary in:\n${output}`);
  const kinds = new Map<string, number>();
  for (const part of (line[2] ?? '').replace(/\.$/, '').split(',')) {
    const kind = /^\s*(\d+) (.+?)\s*$/.exec(part);
    if (kind) kinds.set(kind[2], (kinds.get(kind[2]) ?? 0) + Number(kind[1]));
  }
  const internal = kinds.get('internal') ?? 0;
  const counted = [...kinds.values()].reduce((a, b) => a + b, 0);
  if (counted !== Number(line[1])) throw new Error(`process summary does not add up: ${line[0]}`);
  return { total: counted - internal, remoteHits: kinds.get('remote cache hit') ?? 0 };
}

/** sha256 of each output under `bazel-bin`. */
export const outputs = (dir: string, files: string[]): Record<string, string> =>
  Object.fromEntries(
    files.map((f) => [
      f,
      createHash('sha256')
        .update(readFileSync(join(dir, 'bazel-bin', f)))
        .digest('hex'),
    ]),
  );

/** Runs one Bazel binary with its own output root and HOME under `root` (a temp dir). */
export class BazelRunner {
  private logs = 0;

  constructor(
    readonly bazel: BazelBinary,
    readonly root: string,
  ) {}

  private startup(): string[] {
    return [
      `--output_user_root=${join(this.root, 'bazel-root')}`,
      '--nohome_rc',
      '--nosystem_rc',
      '--max_idle_secs=60',
      ...this.bazel.startup,
    ];
  }

  /**
   * Runs bazel in `dir`; resolves with its combined output (rejects with it on failure). Not with
   * spawnSync: this process keeps serving meanwhile (a spec's proxy may live in it).
   */
  run(dir: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bazel.path, [...this.startup(), ...args], {
        cwd: dir,
        timeout: 240_000,
        env: { ...process.env, HOME: this.root },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
      child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
      child.on('error', reject);
      child.on('close', (code, signal) =>
        code === 0 ? resolve(output) : reject(new Error(`bazel ${args.join(' ')} exited with ${code ?? signal}:\n${output}`)),
      );
    });
  }

  /** `bazel build //...` against the remote cache `cache` (flags), with the CI token; `extra` flags after them. */
  async build(dir: string, cache: string[], extra: string[] = []): Promise<BuildResult> {
    const log = join(this.root, `execution-log-${++this.logs}.json`);
    const output = await this.run(dir, [
      'build',
      ...cache,
      `--remote_header=authorization=Bearer ${TOKEN}`,
      '--spawn_strategy=local',
      '--noshow_progress',
      `--execution_log_json_file=${log}`,
      ...extra,
      '//...',
    ]);
    const spawns = readExecutionLog(log);
    rmSync(log, { force: true });
    return { output, spawns };
  }

  /** Stops the Bazel server of each workspace in `dirs` that exists. */
  shutdown(dirs: string[]): void {
    for (const dir of dirs) {
      if (existsSync(join(dir, 'WORKSPACE')))
        spawnSync(this.bazel.path, [...this.startup(), 'shutdown'], {
          cwd: dir,
          timeout: 60_000,
          env: { ...process.env, HOME: this.root },
        });
    }
  }
}

/** Bazel's warnings about the remote cache ("WARNING: Writing to Remote Cache: ...", "Reading from Remote Cache"...). */
export const REMOTE_CACHE_WARNING = /WARNING: [^\n]*remote cache[^\n]*/i;

/** Every one of `files.length` genrules ran, and none came from the cache. */
export function expectAllRan(build: BuildResult, files: string[]): void {
  expect(processes(build.output)).toEqual({ total: files.length, remoteHits: 0 });
  const genrules = build.spawns.filter((s) => s.mnemonic === 'Genrule');
  expect(genrules).toHaveLength(files.length);
  expect(genrules.filter((s) => s.remoteCacheHit)).toEqual([]);
}

/** Every one of `files.length` genrules, and every spawn at all, was a remote cache hit. */
export function expectAllHits(build: BuildResult, files: string[]): void {
  expect(processes(build.output)).toEqual({ total: files.length, remoteHits: files.length });
  expect(build.spawns.filter((s) => s.mnemonic === 'Genrule')).toHaveLength(files.length);
  expect(build.spawns.filter((s) => !s.remoteCacheHit).map((s) => `${s.mnemonic} (${s.runner})`)).toEqual([]);
}

/**
 * In `dir`: a workspace salted with `salt`, built (every action runs; nothing the cache complains
 * about), `betweenBuilds`, `bazel clean`, built again: every action a remote cache hit, outputs
 * byte-identical. Resolves with both builds.
 */
export async function cleanRebuildHitsTheCache(
  bazel: BazelRunner,
  dir: string,
  salt: string,
  cache: string[],
  betweenBuilds: () => Promise<void> = async () => undefined,
  extra: string[] = [],
): Promise<{ first: BuildResult; second: BuildResult; files: string[] }> {
  const files = writeWorkspace(dir, salt);
  const first = await bazel.build(dir, cache, extra);
  expectAllRan(first, files); // fresh content: every action ran
  expect(first.output).not.toMatch(REMOTE_CACHE_WARNING);
  const before = outputs(dir, files);
  await betweenBuilds();
  await bazel.run(dir, ['clean']);
  const second = await bazel.build(dir, cache, extra);
  expectAllHits(second, files);
  expect(second.output).not.toMatch(REMOTE_CACHE_WARNING);
  expect(outputs(dir, files)).toEqual(before);
  return { first, second, files };
}

/** Runs `command` and returns its stdout, or undefined when it cannot run or fails. */
export function tryRun(command: string, args: string[]): string | undefined {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}
