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
 * The workspace, the runner and the checks are bazel.harness.ts, shared with bazel42.e2e-spec.ts.
 */
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { type AddressInfo, type Socket, createConnection, createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TempDir, TestRedis, freePort, makeTestPki, startTestRedis, stopProcess, tempDir } from '@ferry/testing';
import {
  BazelBinary,
  BazelRunner,
  INSTANCE,
  cleanRebuildHitsTheCache as cleanRebuild,
  expectAllHits,
  expectAllRan,
  grpcCache,
  outputs,
  startIngest as startIngestFor,
  writeWorkspace,
} from './bazel.harness';

const BAZEL_VERSION = '2.1.0';
const supported = platform() === 'linux' && arch() === 'x64';

/** Installs Bazel from npm once per machine (cached in the OS temp dir) and returns the binary. */
function installBazel(): BazelBinary {
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
  return { version: BAZEL_VERSION, path: binary, startup: [] };
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

(supported ? describe : describe.skip)(`Bazel ${BAZEL_VERSION} with --remote_cache on Ferry`, () => {
  let redis: TestRedis;
  let data: TempDir;
  let work: TempDir;
  let port: number;
  let httpPort: number;
  let server: ChildProcess | undefined;
  let bazel: BazelRunner;

  /** Bazel 2.1 sends no credentials on ByteStream: the instance's CAS uploads and reads go anonymous. */
  const anonymousScopes = `ferry:write:${INSTANCE}/uploads/*,ferry:read:${INSTANCE}/blobs/*`;

  async function startServer(): Promise<void> {
    server = await startIngestFor({ redis, data, ports: { grpc: port, http: httpPort }, anonymousScopes });
  }

  const workspaces = ['ws-plain', 'ws-restart', 'ws-broken', 'ws-tls-http'];

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-bazel-data');
    work = tempDir('ferry-bazel-work');
    bazel = new BazelRunner(installBazel(), work.path);
    port = await freePort();
    httpPort = await freePort();
    await startServer();
  }, 600_000);

  afterAll(async () => {
    bazel?.shutdown(workspaces.map((ws) => join(work.path, ws)));
    await stopProcess(server);
    await redis.stop();
    data.remove();
    work.remove();
  });

  async function cleanRebuildHitsTheCache(
    name: string,
    betweenBuilds: () => Promise<void>,
    cache: string[] = grpcCache(port),
    salt = name,
  ): Promise<void> {
    await cleanRebuild(bazel, join(work.path, name), `${salt}-${Date.now()}`, cache, betweenBuilds);
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
      const first = await bazel.build(dir, grpcCache(proxy.port));
      expect(proxy.cuts()).toBe(1);
      expect(first.output).not.toMatch(/Writing to Remote Cache/); // what Bazel prints when an upload fails
      expectAllRan(first, files);
      const before = outputs(dir, files);
      await bazel.run(dir, ['clean']);
      const second = await bazel.build(dir, grpcCache(port));
      expectAllHits(second, files);
      expect(outputs(dir, files)).toEqual(before);
    } finally {
      await proxy.close();
    }
  }, 600_000);

  // One workspace (one Bazel server) for both: grpcs:// first, then new content over http://.
  it('does so over TLS: --remote_cache=grpcs:// with --tls_certificate, against a server with an openssl-made certificate', async () => {
    const pki = makeTestPki(join(work.path, 'pki'));
    const ports = { grpc: await freePort(), http: await freePort() };
    const tlsServer = await startIngestFor({ redis, data, ports, tls: { pki }, anonymousScopes });
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
