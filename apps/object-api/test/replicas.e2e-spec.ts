/**
 * Replicas: two ingest-grpc, two multipart-api and two object-api processes (the built apps) on one
 * Redis and one storage (a data directory, then an S3 bucket of s3rver), with an assembler-worker.
 * For each protocol (ByteStream, GCS v2, multipart, the object API) an upload is broken on replica
 * A by killing it (SIGKILL) in the middle, resumed and finished on replica B from what B reports,
 * and read back from both (A restarted): nothing a replica keeps in its own memory is needed to
 * continue an upload.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { StorageClient, WriteRequest } from '@ferry/protocol';
import {
  MultipartClient,
  TempDir,
  TestRedis,
  TestS3,
  WAIT_MS,
  bearer,
  byteStreamClient,
  chunkedRequests,
  freePort,
  gcsQueryWriteStatus,
  gcsRequests,
  md5Hex,
  patternBytes,
  queryWriteStatus,
  readBytes,
  readObject,
  sha256Hex,
  sleep,
  startBuiltApp,
  startResumableWrite,
  startTestRedis,
  startTestS3,
  stopProcess,
  waitGrpcReady,
  storageClient,
  tempDir,
  waitFor,
  waitHttpReady,
  writeObject,
  writeRequests,
} from '@ferry/testing';

const MiB = 1024 * 1024;
const TOKEN = 'replica-token';
const PART = 5 * MiB;

type Status = { uploadId: string; state: string; partsState: string; resultFileHandleId?: string };

describe.each([['local disk', 'fs'] as const, ['S3 (s3rver)', 's3'] as const])(
  'uploads broken on one replica resume on another: %s',
  (_label, storage) => {
    let redis: TestRedis;
    let data: TempDir;
    let s3: TestS3 | undefined;
    const procs = new Map<string, ChildProcess>();
    const ports = new Map<string, number>();
    /** An ingest replica's metrics and Bazel HTTP cache ports (`<name>:metrics`, `<name>:http`). */
    const sidePorts = new Map<string, number>();

    const env = (name: string) => ({
      REDIS_URL: redis.url,
      FERRY_REDIS_PREFIX: redis.prefix,
      FERRY_DATA_DIR: data.path,
      FERRY_GRPC_PORT: String(ports.get(name)),
      FERRY_MULTIPART_PORT: String(ports.get(name)),
      FERRY_WORKER_PORT: String(ports.get(name)),
      FERRY_OBJECT_PORT: String(ports.get(name)),
      // every port chosen before any app starts: an app binding port 0 meanwhile (startBuiltApp's
      // default for these two) could be given a port picked for an app that starts after it
      ...(sidePorts.has(`${name}:metrics`)
        ? {
            FERRY_GRPC_METRICS_PORT: String(sidePorts.get(`${name}:metrics`)),
            FERRY_CACHE_HTTP_PORT: String(sidePorts.get(`${name}:http`)),
          }
        : {}),
      // short enough that a resume soon finds the killed replica's writer lease lapsed, long enough
      // that a replica starved of CPU for a second or two keeps the leases of its own PUTs and Writes
      FERRY_LEASE_TTL_MS: '5000',
      FERRY_MULTIPART_COMPLETE_WAIT_MS: '20000',
      FERRY_CLIENTS: JSON.stringify([{ clientId: 'replicas', accessToken: TOKEN, scopes: ['*'] }]),
      FERRY_SIGNING_KEY: 'replicas-test-signing-key-0123456789abcdef',
      FERRY_LOG_LEVEL: 'warn',
      // S3: committed sizes advance by 5 MiB parts
      ...(s3 ? { ...s3.env, FERRY_S3_PART_SIZE: String(5 * MiB) } : {}),
    });

    type Replica = 'ingest-a' | 'ingest-b' | 'mp-a' | 'mp-b' | 'obj-a' | 'obj-b' | 'worker';
    const REPLICAS: Replica[] = ['ingest-a', 'ingest-b', 'mp-a', 'mp-b', 'obj-a', 'obj-b', 'worker'];

    async function start(name: Replica): Promise<void> {
      const app = name.startsWith('ingest')
        ? 'ingest-grpc'
        : name === 'worker'
          ? 'assembler-worker'
          : name.startsWith('obj')
            ? 'object-api'
            : 'multipart-api';
      const port = ports.get(name) as number;
      const child = startBuiltApp(app, env(name), true);
      procs.set(name, child);
      if (app !== 'ingest-grpc') return waitHttpReady(child, port);
      await waitGrpcReady(child, port, bearer(TOKEN));
    }

    const kill = (name: string) => stopProcess(procs.get(name));

    beforeAll(async () => {
      redis = await startTestRedis();
      data = tempDir('ferry-replicas');
      if (storage === 's3') s3 = await startTestS3('replicas');
      for (const name of REPLICAS) ports.set(name, await freePort());
      for (const name of REPLICAS.filter((r) => r.startsWith('ingest'))) {
        sidePorts.set(`${name}:metrics`, await freePort());
        sidePorts.set(`${name}:http`, await freePort());
      }
      // one after the other: seven apps booting at once on a busy machine each take as long as all of
      // them (20 s and more), one at a time each is ready in a few seconds
      for (const name of REPLICAS) await start(name);
    }, 120_000);

    afterAll(async () => {
      await Promise.all([...procs.keys()].map(kill));
      await redis.stop();
      await s3?.stop();
      data.remove();
    });

    /**
     * Retries `fn` while it is ABORTED: the dead replica's writer lease has not lapsed yet (it does
     * FERRY_LEASE_TTL_MS after A's last renewal), or B itself lost its lease; `fn` resumes from what B
     * reports at each attempt.
     */
    async function whileAborted<T>(fn: () => Promise<T>): Promise<T> {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        try {
          return await fn();
        } catch (err) {
          if ((err as grpc.ServiceError).code !== grpc.status.ABORTED || Date.now() > deadline) throw err;
          await sleep(100);
        }
      }
    }

    /** Waits until `committed()` passes `bytes`, then kills replica `name` with the stream still open. */
    async function killOnceCommitted(name: Replica, committed: () => Promise<number>, bytes: number): Promise<number> {
      let at = 0;
      await waitFor(`${name} to commit ${bytes} bytes`, async () => (at = await committed()) >= bytes, { intervalMs: 10 });
      await kill(name);
      return at;
    }

    it('ByteStream: Write broken on A, resumed and finished on B', async () => {
      const content = patternBytes(48 * MiB, 21);
      const name = `replicas/bytestream-${Date.now()}.bin`;
      const a = byteStreamClient(`127.0.0.1:${ports.get('ingest-a')}`);
      const b = byteStreamClient(`127.0.0.1:${ports.get('ingest-b')}`);
      try {
        // A receives the first 32 MiB on a stream that stays open, and dies
        const first = writeRequests(
          a,
          (async function* (): AsyncGenerator<WriteRequest> {
            yield* chunkedRequests(name, content.subarray(0, 32 * MiB), { finish: false });
            await new Promise(() => undefined); // hold the stream open until A dies
          })(),
          bearer(TOKEN),
        );
        first.catch(() => undefined);
        const seenBeforeKill = await killOnceCommitted(
          'ingest-a',
          async () => (await queryWriteStatus(b, name, bearer(TOKEN)).catch(() => ({ committed_size: 0 }))).committed_size,
          8 * MiB,
        );
        await first.catch(() => undefined);
        // B reports what is durable and takes the rest
        const resumeAt = (await queryWriteStatus(b, name, bearer(TOKEN))).committed_size;
        expect(resumeAt).toBeGreaterThanOrEqual(seenBeforeKill);
        expect(resumeAt).toBeLessThan(content.length);
        const committedOnB = async () => (await queryWriteStatus(b, name, bearer(TOKEN))).committed_size;
        expect(
          await whileAborted(async () => writeRequests(b, chunkedRequests(name, content, { offset: await committedOnB() }), bearer(TOKEN))),
        ).toBe(content.length);
        expect(sha256Hex((await readBytes(b, name, { metadata: bearer(TOKEN) })).data)).toBe(sha256Hex(content));
        await start('ingest-a');
        expect(sha256Hex((await readBytes(a, name, { metadata: bearer(TOKEN) })).data)).toBe(sha256Hex(content));
      } finally {
        a.close();
        b.close();
      }
    });

    it('GCS v2: resumable write broken on A, resumed and finished on B', async () => {
      const content = patternBytes(40 * MiB, 22);
      const object = `gcs-${Date.now()}.bin`;
      const a: StorageClient = storageClient(`127.0.0.1:${ports.get('ingest-a')}`);
      const b: StorageClient = storageClient(`127.0.0.1:${ports.get('ingest-b')}`);
      try {
        const uploadId = await startResumableWrite(a, 'replicas', object, {}, bearer(TOKEN));
        const first = writeObject(
          a,
          (async function* () {
            yield* gcsRequests(content.subarray(0, 24 * MiB), { first: { upload_id: uploadId }, finish: false });
            await new Promise(() => undefined);
          })(),
          bearer(TOKEN),
        );
        first.catch(() => undefined);
        const persisted = async () => Number((await gcsQueryWriteStatus(b, uploadId, bearer(TOKEN))).persisted_size);
        const seenBeforeKill = await killOnceCommitted('ingest-a', persisted, 8 * MiB);
        await first.catch(() => undefined);
        const resumeAt = await persisted();
        expect(resumeAt).toBeGreaterThanOrEqual(seenBeforeKill);
        const done = await whileAborted(async () =>
          writeObject(b, gcsRequests(content, { first: { upload_id: uploadId }, offset: await persisted() }), bearer(TOKEN)),
        );
        expect(done.resource?.size).toBe(content.length);
        expect(sha256Hex((await readObject(b, 'replicas', object, {}, bearer(TOKEN))).data)).toBe(sha256Hex(content));
        await start('ingest-a');
        expect(sha256Hex((await readObject(a, 'replicas', object, {}, bearer(TOKEN))).data)).toBe(sha256Hex(content));
        expect((await gcsQueryWriteStatus(a, uploadId, bearer(TOKEN))).write_status).toBe('resource');
      } finally {
        a.close();
        b.close();
      }
    });

    it('multipart: parts sent through A until it dies, the upload resumed, completed and served by B', async () => {
      const content = patternBytes(8 * PART + 777, 23);
      const request = {
        fileName: 'replicas.bin',
        contentType: 'application/octet-stream',
        contentMD5Hex: md5Hex(content),
        fileSizeBytes: content.length,
        partSizeBytes: PART,
      };
      const a = new MultipartClient({ base: `http://127.0.0.1:${ports.get('mp-a')}`, token: TOKEN });
      const b = new MultipartClient({ base: `http://127.0.0.1:${ports.get('mp-b')}`, token: TOKEN });
      const started = (await a.start(request)).body as unknown as Status;
      const part = (n: number) => content.subarray((n - 1) * PART, n * PART);
      // three parts through A (its presigned URLs name A's data plane, or the bucket on S3), then A dies
      const urlsA = (await a.urls(started.uploadId, [1, 2, 3])).body.partPresignedUrls;
      for (const u of urlsA) {
        expect((await MultipartClient.put(u.uploadPresignedUrl, part(u.partNumber))).status).toBe(200);
        expect((await a.add(started.uploadId, u.partNumber, md5Hex(part(u.partNumber)))).body).toMatchObject({
          addPartState: 'ADD_SUCCESS',
        });
      }
      await kill('mp-a');
      // the same start on B resumes the same upload and names the missing parts
      const resumed = (await b.start(request)).body as unknown as Status;
      expect(resumed).toMatchObject({ uploadId: started.uploadId, state: 'UPLOADING', partsState: '111000000' });
      const missing = [...resumed.partsState].flatMap((c, i) => (c === '0' ? [i + 1] : []));
      for (const u of (await b.urls(started.uploadId, missing)).body.partPresignedUrls) {
        expect((await MultipartClient.put(u.uploadPresignedUrl, part(u.partNumber))).status).toBe(200);
        expect((await b.add(started.uploadId, u.partNumber, md5Hex(part(u.partNumber)))).body).toMatchObject({
          addPartState: 'ADD_SUCCESS',
        });
      }
      // complete waits for the assembly up to FERRY_MULTIPART_COMPLETE_WAIT_MS and answers 202 if it
      // takes longer (a busy machine): the client completes again, as clients do
      let completed = await b.complete(started.uploadId);
      for (const deadline = Date.now() + WAIT_MS; completed.status === 202 && Date.now() < deadline;)
        completed = await b.complete(started.uploadId);
      const done = completed.body as unknown as Status;
      expect(done).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.any(String) });
      const url = await b.request('GET', `/file/fileHandle/${done.resultFileHandleId}/url?redirect=false`);
      expect(sha256Hex(Buffer.from(await (await fetch(String(url.body))).arrayBuffer()))).toBe(sha256Hex(content));
      await start('mp-a');
      const viaA = await a.request('GET', `/file/fileHandle/${done.resultFileHandleId}`);
      expect(viaA.status).toBe(200);
    });

    it('object API: a putUrl PUT broken with A (or, on S3, in the bucket), the upload renewed, finished and served by B', async () => {
      const content = patternBytes(12 * MiB, 24);
      const name = `replicas/object-${Date.now()}.bin`;
      const api = (replica: string) => async (method: string, path: string, body?: unknown) => {
        const res = await fetch(`http://127.0.0.1:${ports.get(replica)}/api/object/v1${path}`, {
          method,
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          redirect: 'manual',
        });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      };
      const a = api('obj-a');
      const b = api('obj-b');
      const uploadId = Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64url'); // a slugid
      const create = {
        projectId: 'replicas',
        uploadId,
        expires: new Date(Date.now() + 86_400_000).toISOString(),
        proposedUploadMethods: { putUrl: { contentType: 'application/octet-stream', contentLength: content.length } },
      };
      type PutUrl = { url: string; headers: Record<string, string> };
      const onA = (await a('PUT', `/upload/${encodeURIComponent(name)}`, create)).body['uploadMethod'] as { putUrl: PutUrl };
      // the PUT dies half way with A (to A's data plane; on S3 the PUT to the bucket is cut and A dies too)
      expect(new URL(onA.putUrl.url).port).toBe(String(storage === 's3' ? new URL(s3?.endpoint ?? '').port : ports.get('obj-a')));
      const broken = new Promise<void>((resolve) => {
        const req = httpRequest(onA.putUrl.url, { method: 'PUT', headers: onA.putUrl.headers });
        req.on('error', () => resolve());
        req.on('response', (res) => {
          res.resume();
          resolve();
        });
        req.write(content.subarray(0, 4 * MiB), () => void (storage === 's3' ? kill('obj-a').then(() => req.destroy()) : kill('obj-a')));
      });
      await broken;
      // B renews the same upload (same uploadId): a URL of its own, the PUT again, the finish
      const onB = (await b('PUT', `/upload/${encodeURIComponent(name)}`, create)).body['uploadMethod'] as { putUrl: PutUrl };
      expect(new URL(onB.putUrl.url).port).toBe(String(storage === 's3' ? new URL(s3?.endpoint ?? '').port : ports.get('obj-b')));
      expect((await fetch(onB.putUrl.url, { method: 'PUT', headers: onB.putUrl.headers, body: content })).status).toBe(200);
      expect(
        (
          await b('POST', `/finish-upload/${encodeURIComponent(name)}`, {
            projectId: 'replicas',
            uploadId,
            hashes: { sha256: sha256Hex(content) },
          })
        ).status,
      ).toBe(200);
      const download = (await b('PUT', `/start-download/${encodeURIComponent(name)}`, { acceptDownloadMethods: { getUrl: true } }))
        .body as { url: string };
      expect(sha256Hex(Buffer.from(await (await fetch(download.url)).arrayBuffer()))).toBe(sha256Hex(content));
      await start('obj-a');
      expect((await a('GET', `/metadata/${encodeURIComponent(name)}`)).body).toMatchObject({ projectId: 'replicas' });
    });
  },
);
