/**
 * A real Bazel against Ferry's remote cache. Installs Bazel 2.1.0 from npm (`@bazel/bazel` and
 * `@bazel/bazel-linux_x64`; reused from the OS temp dir when already there), runs it offline with
 * its own `--output_user_root`, builds a small workspace of genrules with
 * `--remote_cache=grpc://127.0.0.1:<port>`, cleans, builds again and checks that every action was a
 * remote cache hit and the outputs are byte-identical; then the same with the ingest server killed
 * (SIGKILL) and restarted between the two builds.
 *
 * Bazel 2.1 sends `--remote_header` credentials on the action cache and FindMissingBlobs calls, but
 * none on GetCapabilities and ByteStream: the server runs with a CI client for the former and
 * FERRY_ANONYMOUS_SCOPES for the instance's CAS uploads and reads (content-verified) for the latter.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TempDir, TestRedis, freePort, reapiClients, startBuiltApp, startTestRedis, stopProcess, tempDir, unaryCall, waitUntilReady } from '@ferry/testing';

const BAZEL_VERSION = '2.1.0';
const INSTANCE = 'ci';
const TOKEN = 'ci-token-for-bazel';
const supported = platform() === 'linux' && arch() === 'x64';

/** Installs Bazel from npm once per machine (cached in the OS temp dir) and returns the binary. */
function installBazel(): string {
  const prefix = join(tmpdir(), `ferry-bazel-${BAZEL_VERSION}`);
  const binary = join(prefix, 'node_modules', '@bazel', 'bazel-linux_x64', `bazel-${BAZEL_VERSION}-linux-x86_64`);
  if (!existsSync(binary)) {
    mkdirSync(prefix, { recursive: true });
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', '--prefix', prefix, `@bazel/bazel@${BAZEL_VERSION}`, `@bazel/bazel-linux_x64@${BAZEL_VERSION}`], {
      stdio: 'ignore',
      timeout: 300_000,
    });
  }
  chmodSync(binary, 0o755); // the package ships it without the executable bit
  return binary;
}

/** A workspace of genrules: a chain, a fan-in, and a 3 MiB output (several ByteStream messages). */
function writeWorkspace(dir: string, salt: string): string[] {
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

(supported ? describe : describe.skip)(`Bazel ${BAZEL_VERSION} with --remote_cache on Ferry`, () => {
  let redis: TestRedis;
  let data: TempDir;
  let work: TempDir;
  let port: number;
  let server: ChildProcess | undefined;
  let bazel: string;

  async function startServer(): Promise<void> {
    server = startBuiltApp(
      'ingest-grpc',
      {
        FERRY_GRPC_PORT: String(port),
        REDIS_URL: redis.url,
        FERRY_REDIS_PREFIX: redis.prefix,
        FERRY_DATA_DIR: data.path,
        FERRY_LOG_LEVEL: 'warn',
        FERRY_REAPI_INSTANCES: INSTANCE,
        FERRY_CLIENTS: JSON.stringify([{ clientId: 'bazel-ci', accessToken: TOKEN, scopes: [`ferry:write:${INSTANCE}/*`, `ferry:read:${INSTANCE}/*`] }]),
        FERRY_ANONYMOUS_SCOPES: `ferry:write:${INSTANCE}/uploads/*,ferry:read:${INSTANCE}/blobs/*`,
      },
      true,
    );
    const probe = reapiClients(`127.0.0.1:${port}`);
    try {
      await waitUntilReady(
        server,
        () => unaryCall(probe.capabilities, 'GetCapabilities', { instance_name: INSTANCE }, new grpc.Metadata()).then(() => true),
        'ingest-grpc',
      );
    } finally {
      probe.close();
    }
  }

  /** Runs bazel in `dir`; returns its combined output (throws with it on failure). */
  function run(dir: string, args: string[]): string {
    const r = spawnSync(bazel, [`--output_user_root=${join(work.path, 'bazel-root')}`, '--nohome_rc', '--nosystem_rc', '--max_idle_secs=30', ...args], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 240_000,
      env: { ...process.env, HOME: work.path },
    });
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.status !== 0) throw new Error(`bazel ${args.join(' ')} exited with ${r.status}:\n${output}`);
    return output;
  }

  const build = (dir: string) =>
    run(dir, [
      'build',
      `--remote_cache=grpc://127.0.0.1:${port}`,
      `--remote_instance_name=${INSTANCE}`,
      `--remote_header=authorization=Bearer ${TOKEN}`,
      '--spawn_strategy=local',
      '--noshow_progress',
      '//...',
    ]);

  const outputs = (dir: string, files: string[]) =>
    Object.fromEntries(files.map((f) => [f, createHash('sha256').update(readFileSync(join(dir, 'bazel-bin', f))).digest('hex')]));

  /** "INFO: N processes: ..." of a build: how many actions ran and how many were remote cache hits. */
  function processes(output: string): { total: number; remoteHits: number } {
    const line = /INFO: (\d+) process(?:es)?: ([^\n]*)/.exec(output);
    if (!line) throw new Error(`no process summary in:\n${output}`);
    const hits = /(\d+) remote cache hit/.exec(line[2]);
    return { total: Number(line[1]), remoteHits: hits ? Number(hits[1]) : 0 };
  }

  beforeAll(async () => {
    bazel = installBazel();
    redis = await startTestRedis();
    data = tempDir('ferry-bazel-data');
    work = tempDir('ferry-bazel-work');
    port = await freePort();
    await startServer();
  }, 600_000);

  afterAll(async () => {
    for (const ws of ['ws-plain', 'ws-restart']) {
      if (existsSync(join(work.path, ws))) spawnSync(bazel, [`--output_user_root=${join(work.path, 'bazel-root')}`, 'shutdown'], { cwd: join(work.path, ws), timeout: 60_000 });
    }
    await stopProcess(server);
    await redis.stop();
    data.remove();
    work.remove();
  });

  async function cleanRebuildHitsTheCache(name: string, betweenBuilds: () => Promise<void>): Promise<void> {
    const dir = join(work.path, name);
    const files = writeWorkspace(dir, `${name}-${Date.now()}`);
    const first = build(dir);
    expect(processes(first)).toEqual({ total: files.length, remoteHits: 0 }); // fresh content: every action ran
    const before = outputs(dir, files);
    await betweenBuilds();
    run(dir, ['clean']);
    const second = build(dir);
    expect(processes(second)).toEqual({ total: files.length, remoteHits: files.length });
    expect(outputs(dir, files)).toEqual(before);
  }

  it('serves every action of a clean rebuild from the cache, outputs byte-identical', async () => {
    await cleanRebuildHitsTheCache('ws-plain', async () => undefined);
  }, 600_000);

  it('does so across a kill -9 and restart of the ingest server between the builds', async () => {
    await cleanRebuildHitsTheCache('ws-restart', async () => {
      await stopProcess(server); // SIGKILL
      await startServer();
    });
  }, 600_000);
});
