/**
 * Debian's Bazel 4.2 (package `bazel-bootstrap`, `/usr/bin/bazel-4`) against Ferry's remote cache,
 * as bazel.e2e-spec.ts does with Bazel 2.1: build a workspace of genrules, `clean`, build again:
 * every action a remote cache hit (process summary and execution log), outputs byte-identical; over
 * `grpc://`, `grpcs://` (`--tls_certificate`, an openssl-made certificate) and Bazel's HTTP cache
 * with an instance path (`http://127.0.0.1:<port>/ci`). One workspace, so one Bazel server, salted
 * anew for each case; the server is shut down at the end.
 *
 * Bazel 4.2 sends `--remote_header` credentials on every call (its header interceptor sits on the
 * Capabilities, CAS, action cache and ByteStream stubs alike): the servers here run without
 * FERRY_ANONYMOUS_SCOPES (Bazel 2.1 needs them), so an upload or read without the token would show
 * as a remote cache warning and a miss. ingest-grpc's `ferry_download_bytes_sent_total` shows the
 * rebuild's outputs were read from Ferry through the face under test.
 *
 * Bazel 4.2 has no remote cache compression (`--experimental_remote_cache_compression` came with
 * Bazel 5): the last case checks that it refuses the flag, so no Bazel here exercises Ferry's zstd.
 *
 * Debian's Bazel needs netty-tcnative for `grpcs://` (TCNATIVE below). Both packages are installed
 * when missing (`apt-get install -y bazel-bootstrap libnetty-tcnative-jni`, with `sudo -n` when not
 * root; .ci/run installs them up front). On Linux x64 without apt (or the rights to use it) the
 * suite fails, saying so, rather than skipping: leave it out with `--testPathIgnorePatterns bazel42`.
 */
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { TempDir, TestPki, TestRedis, freePort, makeTestPki, startTestRedis, stopProcess, tempDir } from '@ferry/testing';
import { Redis } from 'ioredis';
import {
  BazelBinary,
  BazelRunner,
  INSTANCE,
  cleanRebuildHitsTheCache,
  expectAllRan,
  grpcCache,
  outputs,
  startIngest,
  tryRun,
  writeWorkspace,
} from './bazel.harness';

const PACKAGE = 'bazel-bootstrap';
/** netty-tcnative's JNI library: OpenSSL for Bazel's Netty, which grpcs:// needs (see TCNATIVE). */
const TCNATIVE_PACKAGE = 'libnetty-tcnative-jni';
const PACKAGES = [PACKAGE, TCNATIVE_PACKAGE];
const BINARY = '/usr/bin/bazel-4';
/**
 * Debian's Bazel is no self-extracting binary: its /etc/bazel/bazelrc points it at this install base
 * (`--trust_install_base`, a Debian option); the runner reads no rc files, so it passes both.
 */
const INSTALL_BASE = '/usr/share/bazel';
/**
 * Debian's Bazel cannot open a `grpcs://` channel as packaged: its Netty (4.1.48, Debian's) has no
 * JDK ALPN, so with Netty's JDK TLS provider the build crashes ("Failed to init TLS infrastructure:
 * JDK provider does not support ALPN protocol", exit 37). Netty takes OpenSSL instead when it can
 * load netty-tcnative, which Debian ships as `libnetty-tcnative.so`; Netty's loader only looks for
 * `libnetty_tcnative.so` (and the library refuses to be loaded through a symlink of another name),
 * so the spec copies it under that name into a directory it adds to Bazel's `java.library.path`.
 */
const TCNATIVE = '/usr/lib/x86_64-linux-gnu/jni/libnetty-tcnative.so';
const supported = platform() === 'linux' && arch() === 'x64';

function apt(args: string[]): void {
  const root = process.getuid?.() === 0;
  if (!root && !tryRun('sudo', ['-n', 'true']))
    throw new Error(
      `Bazel 4.2 test: ${PACKAGES.join(' and ')} must be installed, which needs root: run \`sudo apt-get install -y ${PACKAGES.join(' ')}\``,
    );
  const command = [...(root ? [] : ['sudo', '-n']), 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', ...args];
  execFileSync(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 });
}

/**
 * Debian's Bazel 4.2, installed with apt when missing (and netty-tcnative, for grpcs://); fails
 * loudly when it cannot be. `jniDir`: where the spec puts netty-tcnative under the name Netty loads.
 */
function installDebianBazel(jniDir: string): BazelBinary {
  if (!existsSync(BINARY) || !existsSync(TCNATIVE)) {
    if (!tryRun('apt-get', ['--version']))
      throw new Error(
        `Bazel 4.2 test: ${BINARY} or ${TCNATIVE} is missing and there is no apt-get to install Debian's ${PACKAGES.join(' ')} with. ` +
          `This suite proves Ferry with Bazel 4.2 and does not skip itself on Linux x64; ` +
          `run it on Debian or Ubuntu, or leave it out explicitly (jest --testPathIgnorePatterns bazel42).`,
      );
    try {
      apt(['install', '-y', '-qq', ...PACKAGES]);
    } catch {
      apt(['update', '-qq']); // a fresh machine's package lists may be empty or stale
      apt(['install', '-y', '-qq', ...PACKAGES]);
    }
  }
  const version = tryRun('dpkg-query', ['-W', '-f=${Version}', PACKAGE]) ?? '';
  if (!/^4\.2\./.test(version) || !existsSync(join(INSTALL_BASE, 'A-server.jar')))
    throw new Error(`Bazel 4.2 test: expected ${PACKAGE} 4.2.x with ${BINARY} and ${INSTALL_BASE}, found version "${version}"`);
  mkdirSync(jniDir, { recursive: true });
  copyFileSync(TCNATIVE, join(jniDir, 'libnetty_tcnative.so'));
  return {
    version,
    path: BINARY,
    startup: [`--install_base=${INSTALL_BASE}`, '--trust_install_base', `--host_jvm_args=-Djava.library.path=${INSTALL_BASE}/:${jniDir}`],
  };
}

/** The bytes of the files under `dir` (the blobs a data directory holds). */
function bytesUnder(dir: string): number {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .reduce((sum, e) => sum + statSync(join(e.parentPath, e.name)).size, 0);
}

/** ingest-grpc's `ferry_download_bytes_sent_total{protocol}` (0 before any read). */
async function bytesSent(metricsPort: number, protocol: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = new RegExp(`^ferry_download_bytes_sent_total\\{protocol="${protocol}"\\} (\\d+)`, 'm').exec(text);
  return line ? Number(line[1]) : 0;
}

(supported ? describe : describe.skip)("Debian's Bazel 4.2 with --remote_cache on Ferry", () => {
  let redis: TestRedis;
  let data: TempDir;
  let work: TempDir;
  let ports: { grpc: number; http: number; metrics: number };
  let server: ChildProcess | undefined;
  let bazel: BazelRunner;
  let ws: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-bazel42-data');
    work = tempDir('ferry-bazel42-work');
    bazel = new BazelRunner(installDebianBazel(join(work.path, 'jni')), work.path);
    ws = join(work.path, 'ws');
    ports = { grpc: await freePort(), http: await freePort(), metrics: await freePort() };
    server = await startIngest({ redis, data, ports }); // no FERRY_ANONYMOUS_SCOPES: every call must carry the token
  }, 900_000);

  afterAll(async () => {
    bazel?.shutdown([ws]);
    await stopProcess(server);
    await redis?.stop();
    data?.remove();
    work?.remove();
  });

  /** Total bytes of the rebuild's outputs: what the second build must have read from Ferry at least. */
  const outputBytes = (files: string[]) => files.reduce((sum, f) => sum + statSync(join(ws, 'bazel-bin', f)).size, 0);

  it('serves every action of a clean rebuild from the cache over grpc://, with credentials on every call, outputs byte-identical', async () => {
    let sentBefore = 0;
    const { files } = await cleanRebuildHitsTheCache(bazel, ws, `grpc-${Date.now()}`, grpcCache(ports.grpc), async () => {
      sentBefore = await bytesSent(ports.metrics, 'bytestream');
    });
    expect((await bytesSent(ports.metrics, 'bytestream')) - sentBefore).toBeGreaterThanOrEqual(outputBytes(files));
  }, 600_000);

  it('does so over TLS: --remote_cache=grpcs:// with --tls_certificate (Netty on netty-tcnative), against an openssl-made certificate', async () => {
    const pki: TestPki = makeTestPki(join(work.path, 'pki'));
    const tlsPorts = { grpc: await freePort(), http: await freePort() };
    const tlsServer = await startIngest({ redis, data, ports: tlsPorts, tls: { pki } });
    try {
      await cleanRebuildHitsTheCache(bazel, ws, `grpcs-${Date.now()}`, [
        `--remote_cache=grpcs://127.0.0.1:${tlsPorts.grpc}`,
        `--tls_certificate=${pki.ca.path}`,
        `--remote_instance_name=${INSTANCE}`,
      ]);
    } finally {
      await stopProcess(tlsServer);
    }
  }, 600_000);

  it("does so over Bazel's HTTP cache protocol with an instance path: --remote_cache=http://127.0.0.1:<port>/ci", async () => {
    let sentBefore = 0;
    const cache = [`--remote_cache=http://127.0.0.1:${ports.http}/${INSTANCE}`];
    const { files } = await cleanRebuildHitsTheCache(bazel, ws, `http-${Date.now()}`, cache, async () => {
      sentBefore = await bytesSent(ports.metrics, 'http-cache');
    });
    expect((await bytesSent(ports.metrics, 'http-cache')) - sentBefore).toBeGreaterThanOrEqual(outputBytes(files));
  }, 600_000);

  it('builds more than a small cache holds (FERRY_CACHE_MAX_BYTES): the store stays within its cap, and a build whose blobs were evicted reruns them', async () => {
    const cap = 4 * 1024 * 1024;
    const capped = { grpc: await freePort(), http: await freePort() };
    const cappedRedis = await startTestRedis();
    const cappedData = tempDir('ferry-bazel42-capped');
    // (no minimum age: what a build just wrote may make room for its next output at once)
    const cappedServer = await startIngest({
      redis: cappedRedis,
      data: cappedData,
      ports: capped,
      env: { FERRY_CACHE_MAX_BYTES: String(cap), FERRY_CACHE_MIN_AGE_MS: '0' },
    });
    const state = new Redis(cappedRedis.url);
    const held = async () => Number(await state.hget(`${cappedRedis.prefix}:{cache}:totals`, 'bytes'));
    try {
      const cache = grpcCache(capped.grpc);
      // three builds of ~3.3 MB of outputs each: together more than twice the cap
      const salts = [1, 2, 3].map((i) => `capped-${i}-${Date.now()}`);
      let firstOutputs: Record<string, string> = {};
      for (const [i, salt] of salts.entries()) {
        const files = writeWorkspace(ws, salt);
        const build = await bazel.build(ws, cache);
        expectAllRan(build, files);
        if (i === 0) firstOutputs = outputs(ws, files);
        expect(await held()).toBeLessThanOrEqual(cap);
        expect(bytesUnder(join(cappedData.path, 'blobs'))).toBeLessThanOrEqual(cap);
      }
      // the first build again, after a clean: its blobs were evicted (the 3 MiB output surely): those
      // actions run again instead of failing, and the outputs are the same
      const files = writeWorkspace(ws, salts[0]);
      await bazel.run(ws, ['clean']);
      const again = await bazel.build(ws, cache);
      expect(again.spawns.filter((s) => s.mnemonic === 'Genrule' && !s.remoteCacheHit).length).toBeGreaterThan(0);
      expect(outputs(ws, files)).toEqual(firstOutputs);
      expect(await held()).toBeLessThanOrEqual(cap);
    } finally {
      state.disconnect();
      await stopProcess(cappedServer);
      await cappedRedis.stop();
      cappedData.remove();
    }
  }, 900_000);

  it('has no remote cache compression: Bazel 4.2 refuses --experimental_remote_cache_compression (Bazel 5+)', async () => {
    for (const flag of ['--experimental_remote_cache_compression', '--remote_cache_compression']) {
      const refused = await bazel.build(ws, [...grpcCache(ports.grpc), flag]).then(
        () => '',
        (err: Error) => err.message,
      );
      expect(refused).toContain(`Unrecognized option: ${flag}`);
    }
  }, 600_000);
});
