import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { findWorkspaceRoot } from '@ferry/config';
import type { ByteStreamClient, StorageClient } from '@ferry/protocol';
import { byteStreamClient } from './bytestream-client';
import { storageClient } from './gcs-client';
import { freePort } from './ports';
import { AppName, acceptsConnections, startBuiltApp, stopProcess, waitGrpcReady, waitHttpReady, waitUntilReady } from './processes';
import { TestRedis, startTestRedis } from './redis-server';
import { TestS3, startTestS3 } from './s3-server';
import { TempDir, tempDir } from './temp-dir';

const MiB = 1024 * 1024;

/** Where a face driver reaches Ferry: the stack's current gRPC clients (new ones after a restart) and HTTP bases. */
export interface FaceContext {
  byteStream(): ByteStreamClient;
  storage(): StorageClient;
  /** `http://127.0.0.1:<port>` of multipart-api. */
  multipartBase: string;
  /** `http://127.0.0.1:<port>` of object-api. */
  objectBase: string;
}

export interface FerryStackOptions {
  /** `fs` (a temp data directory, the default) or `s3` (s3rver, parts of 5 MiB). */
  storage?: 'fs' | 's3';
  /** Variables for every app (win over the stack's defaults). */
  env?: Record<string, string>;
  /**
   * Processes of each app (default 1). With more, each serving app's replicas sit behind a TCP
   * balancer on the stack's port (tools/load/balancer.mjs: a new connection goes to the next
   * replica that accepts it, as behind a Kubernetes Service), and every address below is the
   * balancer's.
   */
  replicas?: number;
}

/**
 * The four built apps (dist/apps/*) as processes on one private Redis and one storage, in
 * development mode (client `dev` / `dev-secret`, scope `*`), as users run them: what the upload
 * contract suite drives. Each app can be killed (SIGKILL) and started again on its port.
 */
export interface FerryStack extends FaceContext {
  redis: TestRedis;
  s3?: TestS3;
  storageKind: 'fs' | 's3';
  /** The data directory the apps share (FERRY_DATA_DIR; the stack's temp one unless `env` names another). */
  dataDir: string;
  /** `127.0.0.1:<port>` of ingest-grpc (for clients that dial it themselves: `ferry`, raw gRPC and HTTP/2 clients). */
  grpcAddress: string;
  /** Processes of each app. */
  replicas: number;
  /** The running process of `app`'s replica (its pid, exit events: the fuzz suite watches them for crashes and RSS). */
  child(app: AppName, replica?: number): ChildProcess | undefined;
  /** Kills `app`'s replica (the first by default) with SIGKILL and waits for its exit. */
  kill(app: AppName, replica?: number): Promise<void>;
  /** Starts `app`'s replica (again; the first by default) and waits until it serves. */
  start(app: AppName, replica?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Ferry's four apps, in the order a stack starts them. */
export const FERRY_APPS: readonly AppName[] = ['ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker'];

export async function startFerryStack(options: FerryStackOptions = {}): Promise<FerryStack> {
  const storageKind = options.storage ?? 'fs';
  const replicas = options.replicas ?? 1;
  const redis = await startTestRedis();
  const data: TempDir = tempDir('ferry-stack');
  const s3 = storageKind === 's3' ? await startTestS3('contract') : undefined;
  /** The ports clients use: the one replica's, or the balancers'. */
  const ports = { grpc: await freePort(), multipart: await freePort(), object: await freePort(), worker: await freePort() };
  /** Each replica's own ports (the first replica of a stack without balancers listens on the stack's). */
  const replicaPorts: (typeof ports)[] = [];
  for (let r = 0; r < replicas; r++) {
    replicaPorts.push(
      replicas === 1 ? ports : { grpc: await freePort(), multipart: await freePort(), object: await freePort(), worker: await freePort() },
    );
  }
  const children = new Map<string, ChildProcess>();
  const balancers: ChildProcess[] = [];
  const address = `127.0.0.1:${ports.grpc}`;
  let clients: { byteStream: ByteStreamClient; storage: StorageClient } | undefined;

  const env: NodeJS.ProcessEnv = {
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: redis.prefix,
    FERRY_DATA_DIR: data.path,
    // a writer killed with its process blocks its upload this long; a live one renews every third of it
    FERRY_LEASE_TTL_MS: '2000',
    // a worker killed mid-job is replaced after about this long
    FERRY_JOB_LOCK_MS: '5000',
    FERRY_MULTIPART_COMPLETE_WAIT_MS: '20000',
    FERRY_LOG_LEVEL: 'error',
    ...(s3 ? { ...s3.env, FERRY_S3_PART_SIZE: String(5 * MiB) } : {}),
    ...options.env,
  };
  const envOf = (replica: number): NodeJS.ProcessEnv => {
    const p = replicaPorts[replica];
    return {
      ...env,
      FERRY_GRPC_PORT: String(p.grpc),
      FERRY_MULTIPART_PORT: String(p.multipart),
      FERRY_OBJECT_PORT: String(p.object),
      FERRY_WORKER_PORT: String(p.worker),
    };
  };

  /** New gRPC clients once the server accepts connections (an old client may be in grpc-js's reconnect backoff). */
  function renewClients(): void {
    clients?.byteStream.close();
    clients?.storage.close();
    clients = { byteStream: byteStreamClient(address), storage: storageClient(address) };
  }

  async function start(app: AppName, replica = 0): Promise<void> {
    if (replica < 0 || replica >= replicas) throw new Error(`${app} has no replica ${replica}`);
    const child = startBuiltApp(app, envOf(replica), true);
    children.set(`${app}#${replica}`, child);
    const p = replicaPorts[replica];
    if (app === 'multipart-api') return waitHttpReady(child, p.multipart);
    if (app === 'object-api') return waitHttpReady(child, p.object);
    if (app === 'assembler-worker') return waitHttpReady(child, p.worker);
    await waitGrpcReady(child, p.grpc);
    renewClients();
  }

  const stop = async () => {
    await Promise.all([...children.values(), ...balancers].map((c) => stopProcess(c)));
    clients?.byteStream.close();
    clients?.storage.close();
    await redis.stop();
    await s3?.stop();
    data.remove();
  };

  try {
    if (replicas > 1) {
      for (const kind of ['grpc', 'multipart', 'object'] as const) {
        balancers.push(
          await startBalancer(
            ports[kind],
            replicaPorts.map((p) => p[kind]),
          ),
        );
      }
    }
    // one after the other: apps booting at once on a busy machine each take as long as all of them
    for (let r = 0; r < replicas; r++) for (const app of FERRY_APPS) await start(app, r);
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    redis,
    s3,
    storageKind,
    replicas,
    dataDir: env['FERRY_DATA_DIR'] as string,
    grpcAddress: address,
    child: (app, replica = 0) => children.get(`${app}#${replica}`),
    multipartBase: `http://127.0.0.1:${ports.multipart}`,
    objectBase: `http://127.0.0.1:${ports.object}`,
    byteStream: () => clients?.byteStream as ByteStreamClient,
    storage: () => clients?.storage as StorageClient,
    kill: (app, replica = 0) => stopProcess(children.get(`${app}#${replica}`)),
    start,
    stop,
  };
}

/** tools/load/balancer.mjs on `port` in front of `backends`, once it listens. */
async function startBalancer(port: number, backends: number[]): Promise<ChildProcess> {
  const script = join(findWorkspaceRoot(__dirname) ?? process.cwd(), 'tools', 'load', 'balancer.mjs');
  const child = spawn(process.execPath, [script, String(port), ...backends.map(String)], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitUntilReady(child, () => acceptsConnections(port), `balancer on port ${port}`);
  return child;
}
