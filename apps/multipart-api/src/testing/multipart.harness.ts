import { REDIS, STORAGE } from '@ferry/core';
import { AssemblyWorker, DigestProgress, FileHandles, MultipartAssembler, MultipartStore, resumableDigests } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { HttpAppHarness, MultipartClient, startHttpAppHarness } from '@ferry/testing';
import { HashPool } from '@ferry/uploads';
import { createMultipartApi } from '../app/bootstrap';

export const CLIENTS = [
  { clientId: 'alice', accessToken: 'alice-token', scopes: ['ferry:write:fileHandle/*'] },
  { clientId: 'bob', accessToken: 'bob-token-1', scopes: ['ferry:write:*'] },
  { clientId: 'carol', accessToken: 'carol-token', scopes: ['ferry:read:*'] },
];

export interface MultipartHarness extends HttpAppHarness {
  storage: Storage;
  client(token: string): MultipartClient;
  /** Runs an assembly worker in this process (as the assembler-worker app does). */
  startWorker(): Promise<void>;
  stopWorker(): Promise<void>;
  /** True while a PUT of part `n` of the upload holds its lease (the server is receiving that part). */
  partLeaseHeld(uploadId: string, n: number): Promise<boolean>;
}

/** Boots the real multipart-api on a free port with a private Redis and data directory. */
export async function startMultipartApi(env: Record<string, string> = {}, withWorker = true): Promise<MultipartHarness> {
  const h = await startHttpAppHarness({
    portVariable: 'FERRY_MULTIPART_PORT',
    // A part PUT's lease is renewed every third of its TTL and taken as lost at four fifths of it: a
    // server starved for about half the TTL (a busy machine) refuses the PUT with 409 ABORTED. So the
    // default TTL, not a shorter one: no test needs a lease to lapse soon (they wait, with
    // partLeaseHeld, for the server to take or release it).
    env: {
      FERRY_LEASE_TTL_MS: '10000',
      FERRY_CLIENTS: JSON.stringify(CLIENTS),
      FERRY_SIGNING_KEY: 'test-signing-key-0123456789abcdef',
      ...env,
    },
    needs: ['signingKey'],
    create: (config) => createMultipartApi(config, false),
  });
  const { app, config } = h;
  let worker: { worker: AssemblyWorker; connection: Redis; pool: HashPool } | undefined;
  const harness: MultipartHarness = {
    ...h,
    storage: app.get<Storage>(STORAGE),
    client: (token) => new MultipartClient({ base: h.base, token }),
    startWorker: async () => {
      if (worker) return;
      const connection = createRedis(config.redis.url, 'worker');
      const pool = new HashPool(1);
      const store = app.get(MultipartStore);
      const storage = app.get<Storage>(STORAGE);
      const progress = new DigestProgress(store, storage, resumableDigests(), { leaseTtlMs: config.uploads.leaseTtlMs });
      const assembler = new MultipartAssembler(store, app.get(FileHandles), storage, progress);
      const w = new AssemblyWorker(connection, app.get(RedisKeys).bullPrefix(), assembler, {
        concurrency: 2,
        lockMs: config.worker.jobLockMs,
      });
      worker = { worker: w, connection, pool };
      await w.ready();
    },
    stopWorker: async () => {
      if (!worker) return;
      await worker.worker.close();
      await worker.connection.quit();
      await worker.pool.close();
      worker = undefined;
    },
    // the key MultipartStore.beginPart sets with NX and PX, and endPart / abortPart delete
    partLeaseHeld: async (uploadId, n) => (await app.get<Redis>(REDIS).exists(app.get(RedisKeys).uploadPartLease(uploadId, n))) === 1,
    close: async () => {
      await harness.stopWorker();
      await h.close();
    },
  };
  if (withWorker) await harness.startWorker();
  return harness;
}
