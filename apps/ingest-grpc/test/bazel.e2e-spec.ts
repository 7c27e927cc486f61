/**
 * A real Bazel against Ferry's remote cache. Installs Bazel 2.1.0 from npm (`@bazel/bazel` and
 * `@bazel/bazel-linux_x64`; reused from the OS temp dir when already there), runs it offline with
 * its own `--output_user_root`, builds a small workspace of genrules with
 * `--remote_cache=grpc://127.0.0.1:<port>`, cleans, builds again and checks that every action was a
 * remote cache hit and the outputs are byte-identical; then the same with the ingest server killed
 * (SIGKILL) and restarted between the two builds; and once through a proxy that cuts the connection
 * in the middle of the 3 MiB upload. Then over TLS (`grpcs://`, a second server with an openssl-made
 * certificate, `--tls_certificate`) and over Bazel's HTTP cache protocol
 * (`--remote_cache=http://127.0.0.1:<port>/ci`), each a clean rebuild served wholly from the cache.
 *
 * Bazel 2.1 sends `--remote_header` credentials on the action cache and FindMissingBlobs calls, but
 * none on GetCapabilities and ByteStream: the server runs with a CI client for the former and
 * FERRY_ANONYMOUS_SCOPES for the instance's CAS uploads and reads (content-verified) for the latter.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Socket, createConnection, createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  TempDir,
  TestPki,
  TestRedis,
  freePort,
  makeTestPki,
  reapiClients,
  startBuiltApp,
  startTestRedis,
  stopProcess,
  tempDir,
  unaryCall,
  waitUntilReady,
} from '@ferry/testing';

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
    execFileSync(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--no-save',
        '--prefix',
        prefix,
        `@bazel/bazel@${BAZEL_VERSION}`,
        `@bazel/bazel-linux_x64@${BAZEL_VERSION}`,
      ],
      {
        stdio: 'ignore',
        timeout: 300_000,
      },
    );
  }
  chmodSync(binary, 0o755); // the package ships it without the executable bit
  return binary;
}

/**
 * A TCP proxy to 127.0.0.1:`target` that cuts the connection it is carrying (both sides) once
 * `cutAfter` bytes in all have gone from clients to the server; only once.
 */
async function cuttingProxy(target: number, cutAfter: number): Promise<{ port: number; cuts: () => number; close(): Promise<void> }> {
  let sent = 0;
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (cuts === 0 && sent >= cutAfter) {
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cuts: () => cuts,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
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
  let httpPort: number;
  let server: ChildProcess | undefined;
  let bazel: string;

  /** An ingest-grpc on the suite's Redis and data: plaintext on `port` / `httpPort`, or TLS with `tls`. */
  async function startIngest(ports: { grpc: number; http: number }, tls?: { pki: TestPki }): Promise<ChildProcess> {
    const child = startBuiltApp(
      'ingest-grpc',
      {
        FERRY_GRPC_PORT: String(ports.grpc),
        FERRY_CACHE_HTTP_PORT: String(ports.http),
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
        FERRY_ANONYMOUS_SCOPES: `ferry:write:${INSTANCE}/uploads/*,ferry:read:${INSTANCE}/blobs/*`,
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

  async function startServer(): Promise<void> {
    server = await startIngest({ grpc: port, http: httpPort });
  }

  /**
   * Runs bazel in `dir`; resolves with its combined output (rejects with it on failure). Not with
   * spawnSync: this process keeps serving meanwhile (the cutting proxy lives in it).
   */
  function run(dir: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        bazel,
        [`--output_user_root=${join(work.path, 'bazel-root')}`, '--nohome_rc', '--nosystem_rc', '--max_idle_secs=30', ...args],
        {
          cwd: dir,
          timeout: 240_000,
          env: { ...process.env, HOME: work.path },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
      child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
      child.on('error', reject);
      child.on('close', (code, signal) =>
        code === 0 ? resolve(output) : reject(new Error(`bazel ${args.join(' ')} exited with ${code ?? signal}:\n${output}`)),
      );
    });
  }

  /** A build against the remote cache `cache` (flags); by default Ferry's gRPC port, instance ci. */
  const build = (dir: string, cache: string[] | number = port) =>
    run(dir, [
      'build',
      ...(typeof cache === 'number' ? [`--remote_cache=grpc://127.0.0.1:${cache}`, `--remote_instance_name=${INSTANCE}`] : cache),
      `--remote_header=authorization=Bearer ${TOKEN}`,
      '--spawn_strategy=local',
      '--noshow_progress',
      '//...',
    ]);

  const outputs = (dir: string, files: string[]) =>
    Object.fromEntries(
      files.map((f) => [
        f,
        createHash('sha256')
          .update(readFileSync(join(dir, 'bazel-bin', f)))
          .digest('hex'),
      ]),
    );

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
    httpPort = await freePort();
    await startServer();
  }, 600_000);

  afterAll(async () => {
    for (const ws of ['ws-plain', 'ws-restart', 'ws-broken', 'ws-tls-http']) {
      if (existsSync(join(work.path, ws)))
        spawnSync(bazel, [`--output_user_root=${join(work.path, 'bazel-root')}`, 'shutdown'], {
          cwd: join(work.path, ws),
          timeout: 60_000,
        });
    }
    await stopProcess(server);
    await redis.stop();
    data.remove();
    work.remove();
  });

  async function cleanRebuildHitsTheCache(
    name: string,
    betweenBuilds: () => Promise<void>,
    cache: string[] | number = port,
    salt = name,
  ): Promise<void> {
    const dir = join(work.path, name);
    const files = writeWorkspace(dir, `${salt}-${Date.now()}`);
    const first = await build(dir, cache);
    expect(processes(first)).toEqual({ total: files.length, remoteHits: 0 }); // fresh content: every action ran
    const before = outputs(dir, files);
    await betweenBuilds();
    await run(dir, ['clean']);
    const second = await build(dir, cache);
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

  it('completes an upload broken mid-stream: QueryWriteStatus tells Bazel 2.1 0, and it re-sends from 0', async () => {
    // Bazel 2.1 fails when told a partial size (NullPointerException in Chunker.seek): Ferry knows it
    // by the tool_details of its calls (FERRY_REAPI_ZERO_RESUME=auto) and answers 0
    const proxy = await cuttingProxy(port, 1.5 * 1024 * 1024); // inside big.bin's 3 MiB, after everything else
    try {
      const dir = join(work.path, 'ws-broken');
      const files = writeWorkspace(dir, `ws-broken-${Date.now()}`);
      const first = await build(dir, proxy.port);
      expect(proxy.cuts()).toBe(1);
      expect(first).not.toMatch(/Writing to Remote Cache/); // what Bazel prints when an upload fails
      expect(processes(first)).toEqual({ total: files.length, remoteHits: 0 });
      const before = outputs(dir, files);
      await run(dir, ['clean']);
      const second = await build(dir);
      expect(processes(second)).toEqual({ total: files.length, remoteHits: files.length });
      expect(outputs(dir, files)).toEqual(before);
    } finally {
      await proxy.close();
    }
  }, 600_000);

  // One workspace (one Bazel server) for both: grpcs:// first, then new content over http://.
  it('does so over TLS: --remote_cache=grpcs:// with --tls_certificate, against a server with an openssl-made certificate', async () => {
    const pki = makeTestPki(join(work.path, 'pki'));
    const ports = { grpc: await freePort(), http: await freePort() };
    const tlsServer = await startIngest(ports, { pki });
    try {
      await cleanRebuildHitsTheCache('ws-tls-http', async () => undefined, [
        `--remote_cache=grpcs://127.0.0.1:${ports.grpc}`,
        `--tls_certificate=${pki.ca.path}`,
        `--remote_instance_name=${INSTANCE}`,
      ]);
    } finally {
      await stopProcess(tlsServer);
    }
  }, 600_000);

  it("does so over Bazel's HTTP cache protocol: --remote_cache=http://127.0.0.1:<port>/ci", async () => {
    const cache = [`--remote_cache=http://127.0.0.1:${httpPort}/${INSTANCE}`];
    await cleanRebuildHitsTheCache('ws-tls-http', async () => undefined, cache, 'http');
  }, 600_000);
});
