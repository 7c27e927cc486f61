import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import type { ByteStreamClient, StorageClient } from '@ferry/protocol';
import { byteStreamClient, queryWriteStatus } from './bytestream-client';
import { storageClient } from './gcs-client';
import { freePort } from './ports';
import { AppName, acceptsConnections, startBuiltApp, stopProcess, waitHttpReady, waitUntilReady } from './processes';
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
  /** The running process of `app` (its pid, exit events: the fuzz suite watches them for crashes and RSS). */
  child(app: AppName): ChildProcess | undefined;
  /** Kills `app` with SIGKILL and waits for its exit. */
  kill(app: AppName): Promise<void>;
  /** Starts `app` (again) and waits until it serves. */
  start(app: AppName): Promise<void>;
  stop(): Promise<void>;
}

const APPS: AppName[] = ['ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker'];

export async function startFerryStack(options: FerryStackOptions = {}): Promise<FerryStack> {
  const storageKind = options.storage ?? 'fs';
  const redis = await startTestRedis();
  const data: TempDir = tempDir('ferry-stack');
  const s3 = storageKind === 's3' ? await startTestS3('contract') : undefined;
  const ports = { grpc: await freePort(), multipart: await freePort(), object: await freePort(), worker: await freePort() };
  const children = new Map<AppName, ChildProcess>();
  const address = `127.0.0.1:${ports.grpc}`;
  let clients: { byteStream: ByteStreamClient; storage: StorageClient } | undefined;

  const env: NodeJS.ProcessEnv = {
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: redis.prefix,
    FERRY_DATA_DIR: data.path,
    FERRY_GRPC_PORT: String(ports.grpc),
    FERRY_MULTIPART_PORT: String(ports.multipart),
    FERRY_OBJECT_PORT: String(ports.object),
    FERRY_WORKER_PORT: String(ports.worker),
    // a writer killed with its process blocks its upload this long; a live one renews every third of it
    FERRY_LEASE_TTL_MS: '2000',
    // a worker killed mid-job is replaced after about this long
    FERRY_JOB_LOCK_MS: '5000',
    FERRY_MULTIPART_COMPLETE_WAIT_MS: '20000',
    FERRY_LOG_LEVEL: 'error',
    ...(s3 ? { ...s3.env, FERRY_S3_PART_SIZE: String(5 * MiB) } : {}),
    ...options.env,
  };

  /** New gRPC clients once the server accepts connections (an old client may be in grpc-js's reconnect backoff). */
  function renewClients(): void {
    clients?.byteStream.close();
    clients?.storage.close();
    clients = { byteStream: byteStreamClient(address), storage: storageClient(address) };
  }

  async function start(app: AppName): Promise<void> {
    const child = startBuiltApp(app, env, true);
    children.set(app, child);
    if (app === 'multipart-api') return waitHttpReady(child, ports.multipart);
    if (app === 'object-api') return waitHttpReady(child, ports.object);
    if (app === 'assembler-worker') return waitHttpReady(child, ports.worker);
    await waitUntilReady(child, () => acceptsConnections(ports.grpc), 'ingest-grpc');
    renewClients();
    const client = clients?.byteStream as ByteStreamClient;
    // it serves once a status query answers (NOT_FOUND for a name nobody wrote)
    await waitUntilReady(
      child,
      () =>
        queryWriteStatus(client, 'contract/readiness-probe').then(
          () => true,
          (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
        ),
      'ingest-grpc',
    );
  }

  const stop = async () => {
    await Promise.all([...children.values()].map((c) => stopProcess(c)));
    clients?.byteStream.close();
    clients?.storage.close();
    await redis.stop();
    await s3?.stop();
    data.remove();
  };

  try {
    // one after the other: apps booting at once on a busy machine each take as long as all of them
    for (const app of APPS) await start(app);
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    redis,
    s3,
    storageKind,
    dataDir: env['FERRY_DATA_DIR'] as string,
    grpcAddress: address,
    child: (app) => children.get(app),
    multipartBase: `http://127.0.0.1:${ports.multipart}`,
    objectBase: `http://127.0.0.1:${ports.object}`,
    byteStream: () => clients?.byteStream as ByteStreamClient,
    storage: () => clients?.storage as StorageClient,
    kill: (app) => stopProcess(children.get(app)),
    start,
    stop,
  };
}
