/**
 * Graceful shutdown: ingest-grpc (the built app) gets SIGTERM while a ByteStream Write and a GCS
 * WriteObject are streaming. It must exit promptly with status 0, end both streams with
 * UNAVAILABLE (retryable) rather than a broken connection, and have committed every byte it
 * received: after a restart the committed sizes are at least what it acknowledged before, and the
 * uploads resume from them and land the exact bytes.
 */
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import type { ByteStreamClient, StorageClient, WriteRequest } from '@ferry/protocol';
import {
  TempDir,
  TestRedis,
  byteStreamClient,
  chunkedRequests,
  exitOf,
  freePort,
  gcsQueryWriteStatus,
  gcsRequests,
  patternBytes,
  queryWriteStatus,
  readBytes,
  readObject,
  sha256Hex,
  startBuiltApp,
  startResumableWrite,
  startTestRedis,
  stopProcess,
  storageClient,
  tempDir,
  waitFor,
  waitUntilReady,
  writeObject,
  writeRequests,
} from '@ferry/testing';

const MiB = 1024 * 1024;

/** Yields the requests slowly (one every `ms`), so that the stream is mid-way when the signal comes. */
async function* paced<T>(requests: Iterable<T>, ms: number): AsyncGenerator<T> {
  for (const r of requests) {
    yield r;
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
}

describe('ingest-grpc on SIGTERM', () => {
  let redis: TestRedis;
  let data: TempDir;
  let port: number;
  let server: ChildProcess | undefined;
  let bytestream: ByteStreamClient;
  let storage: StorageClient;

  async function startServer(): Promise<void> {
    server = startBuiltApp(
      'ingest-grpc',
      {
        FERRY_GRPC_PORT: String(port),
        REDIS_URL: redis.url,
        FERRY_REDIS_PREFIX: redis.prefix,
        FERRY_DATA_DIR: data.path,
        FERRY_LOG_LEVEL: 'warn',
      },
      true,
    );
    await waitUntilReady(
      server,
      () =>
        queryWriteStatus(bytestream, 'probe').then(
          () => true,
          (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
        ),
      'ingest-grpc',
    );
  }

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-ingest-shutdown');
    port = await freePort();
    bytestream = byteStreamClient(`127.0.0.1:${port}`);
    storage = storageClient(`127.0.0.1:${port}`);
    await startServer();
  });

  afterAll(async () => {
    await stopProcess(server);
    bytestream.close();
    storage.close();
    await redis.stop();
    data.remove();
  });

  it('ends upload streams with UNAVAILABLE after committing what it received; both resume with nothing lost', async () => {
    const content = patternBytes(64 * MiB, 31);
    const name = 'shutdown/bytestream.bin';
    const uploadId = await startResumableWrite(storage, 'shutdown', 'gcs.bin');
    const write = writeRequests(bytestream, paced<WriteRequest>(chunkedRequests(name, content, { chunk: MiB }), 30));
    const gcs = writeObject(storage, paced(gcsRequests(content, { first: { upload_id: uploadId }, chunk: MiB }), 30));
    const committed = async () => ({
      bytestream: (await queryWriteStatus(bytestream, name).catch(() => ({ committed_size: 0 }))).committed_size,
      gcs: Number((await gcsQueryWriteStatus(storage, uploadId)).persisted_size ?? 0),
    });
    // let both streams get some way in, then signal
    let before = { bytestream: 0, gcs: 0 };
    await waitFor('both streams to commit 8 MiB', async () => {
      before = await committed();
      return before.bytestream >= 8 * MiB && before.gcs >= 8 * MiB;
    });
    expect(before.bytestream).toBeGreaterThanOrEqual(8 * MiB);
    expect(before.gcs).toBeGreaterThanOrEqual(8 * MiB);
    const exited = exitOf(server as ChildProcess);
    const signalledAt = Date.now();
    server?.kill('SIGTERM');
    const [writeErr, gcsErr] = await Promise.all([
      write.then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      ),
      gcs.then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      ),
    ]);
    expect(await exited).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(10_000);
    expect(writeErr?.code).toBe(grpc.status.UNAVAILABLE);
    expect(writeErr?.details).toMatch(/shutting down/);
    expect(gcsErr?.code).toBe(grpc.status.UNAVAILABLE);

    await startServer();
    const after = await committed();
    expect(after.bytestream).toBeGreaterThanOrEqual(before.bytestream);
    expect(after.gcs).toBeGreaterThanOrEqual(before.gcs);
    expect(after.bytestream).toBeLessThan(content.length); // really interrupted mid-way
    expect(await writeRequests(bytestream, chunkedRequests(name, content, { offset: after.bytestream }))).toBe(content.length);
    expect((await writeObject(storage, gcsRequests(content, { first: { upload_id: uploadId }, offset: after.gcs }))).resource?.size).toBe(
      content.length,
    );
    expect(sha256Hex((await readBytes(bytestream, name)).data)).toBe(sha256Hex(content));
    expect(sha256Hex((await readObject(storage, 'shutdown', 'gcs.bin')).data)).toBe(sha256Hex(content));
  });
});
