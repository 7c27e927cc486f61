/**
 * On S3 storage, what a client is told is persisted is in the bucket to the byte, also below a part
 * (the bytes after the last whole part are written as tail pieces), and survives kill -9 of the
 * server while the stream is still open: ingest-grpc runs as a separate process (the built
 * dist/apps/ingest-grpc) against s3rver with parts of 5 MiB. A GCS BidiWriteObject `flush` after
 * 256 KiB answers 262144; a ByteStream stream that sent 3 MiB and stays open is committed to the
 * byte by the writer's own commits. After the restart each resumes exactly there and publishes
 * the exact bytes.
 */
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import type { BidiWriteObjectResponse__Output, ByteStreamClient, StorageClient } from '@ferry/protocol';
import {
  TempDir,
  TestRedis,
  TestS3,
  bearer,
  byteStreamClient,
  chunkedRequests,
  freePort,
  gcsQueryWriteStatus,
  gcsRequests,
  patternBytes,
  queryWriteStatus,
  randomName,
  readBytes,
  readObject,
  sha256Hex,
  startBuiltApp,
  startResumableWrite,
  startTestRedis,
  startTestS3,
  stopProcess,
  storageClient,
  tempDir,
  waitFor,
  waitUntilReady,
  writeObject,
  writeRequests,
} from '@ferry/testing';

const KiB = 1024;
const MiB = 1024 * KiB;
const PART = 5 * MiB;

describe('ingest-grpc on S3: persisted below a part, across kill -9', () => {
  let redis: TestRedis;
  let data: TempDir;
  let s3: TestS3;
  let port: number;
  let server: ChildProcess | undefined;
  let client: ByteStreamClient;
  let storage: StorageClient;

  async function startServer(): Promise<void> {
    server = startBuiltApp(
      'ingest-grpc',
      {
        FERRY_GRPC_PORT: String(port),
        REDIS_URL: redis.url,
        FERRY_REDIS_PREFIX: redis.prefix,
        FERRY_DATA_DIR: data.path,
        FERRY_LEASE_TTL_MS: '1000',
        FERRY_LOG_LEVEL: 'warn',
        ...s3.env,
        FERRY_S3_PART_SIZE: String(PART),
      },
      true,
    );
    await waitUntilReady(
      server,
      async () => {
        try {
          await queryWriteStatus(client, 'probe');
          return true;
        } catch (err) {
          return (err as grpc.ServiceError).code === grpc.status.NOT_FOUND;
        }
      },
      'ingest-grpc',
    );
  }

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-s3-tail');
    s3 = await startTestS3('s3-tail');
    port = await freePort();
    client = byteStreamClient(`127.0.0.1:${port}`);
    storage = storageClient(`127.0.0.1:${port}`);
    await startServer();
  });

  afterAll(async () => {
    await stopProcess(server);
    client.close();
    storage.close();
    await redis.stop();
    await s3.stop();
    data.remove();
  });

  /** The tail pieces in the bucket (none once every upload is published). */
  const tailPieces = async () => (await s3.keys('staging/')).filter((key) => /\/tail-\d{8}-\d{15}(\.f\d+)?$/.test(key));

  it('GCS: a flush after 256 KiB answers persisted_size 262144, which a restarted server resumes from', async () => {
    const object = randomName('flushed');
    const content = patternBytes(PART + MiB + 5, 41); // the rest crosses the part the tail lies in
    const uploadId = await startResumableWrite(storage, 's3-tail', object);
    const [first] = gcsRequests(content.subarray(0, 256 * KiB), { first: { upload_id: uploadId }, finish: false, chunk: 256 * KiB });
    const call = storage.BidiWriteObject(bearer());
    call.on('error', () => undefined); // (the server is killed under it)
    const answer = new Promise<BidiWriteObjectResponse__Output>((resolve) => call.once('data', resolve));
    call.write({ ...first, flush: true, state_lookup: true });
    expect(Number((await answer).persisted_size)).toBe(262144);
    expect(await tailPieces()).toHaveLength(1);
    // killed with the stream open: only what the flush made durable is left
    await stopProcess(server);
    await startServer();
    expect(Number((await gcsQueryWriteStatus(storage, uploadId)).persisted_size)).toBe(262144);
    const done = await writeObject(storage, gcsRequests(content, { first: { upload_id: uploadId }, offset: 262144, chunk: MiB }));
    expect(Number(done.resource?.size)).toBe(content.length);
    expect(sha256Hex((await readObject(storage, 's3-tail', object)).data)).toBe(sha256Hex(content));
    expect(await tailPieces()).toEqual([]);
  });

  it('ByteStream: a stream left open below a part is committed to the byte by the writer, and resumes there after kill -9', async () => {
    const name = randomName('open');
    const content = patternBytes(2 * PART + 11, 42);
    const sent = 3 * MiB + 7; // below a part: with whole parts only, the committed size would stay 0
    const call = client.Write(bearer(), () => undefined); // (ends in an error: the server is killed under it)
    for (const req of chunkedRequests(name, content.subarray(0, sent), { finish: false, chunk: MiB })) call.write(req);
    await waitFor(`the committed size to reach ${sent}`, async () => (await queryWriteStatus(client, name)).committed_size === sent);
    expect(await tailPieces()).not.toEqual([]);
    await stopProcess(server);
    await startServer();
    expect(await queryWriteStatus(client, name)).toEqual({ committed_size: sent, complete: false });
    // resuming re-hashes the committed prefix, read back from the tail pieces
    expect(await writeRequests(client, chunkedRequests(name, content, { offset: sent, chunk: MiB }))).toBe(content.length);
    expect(sha256Hex((await readBytes(client, name)).data)).toBe(sha256Hex(content));
    expect(await tailPieces()).toEqual([]);
    expect(await s3.keys('staging/')).toEqual([]);
  });
});
