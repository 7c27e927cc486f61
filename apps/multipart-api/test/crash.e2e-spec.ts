/**
 * Crash tests: multipart-api and assembler-worker run as separate processes (the built dist/apps)
 * and are killed with SIGKILL: multipart-api while parts are being PUT (and hashed as they land),
 * multipart-api while it assembles an upload in complete, the worker while it assembles. The client behaves like the Python client (start, PUT and add the missing parts,
 * complete; retry the whole cycle on failure). Checks: the upload completes, the file's sha256 is
 * right, and there is exactly one file handle for it.
 */
import type { ChildProcess } from 'node:child_process';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import {
  MultipartClient,
  TempDir,
  TestRedis,
  freePort,
  md5Hex,
  patternBytes,
  sha256Hex,
  startBuiltApp,
  sleep,
  startTestRedis,
  stopProcess,
  tempDir,
  waitFor,
  waitHttpReady,
} from '@ferry/testing';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const TOKEN = 'crash-token';

type Status = { uploadId: string; state: string; partsState: string; resultFileHandleId?: string };

describe('multipart uploads survive kill -9 of multipart-api and of the worker', () => {
  let redis: TestRedis;
  let data: TempDir;
  let apiPort: number;
  let workerPort: number;
  let api: ChildProcess | undefined;
  let worker: ChildProcess | undefined;
  let client: MultipartClient;

  const env = () => ({
    REDIS_URL: redis.url,
    FERRY_REDIS_PREFIX: redis.prefix,
    FERRY_DATA_DIR: data.path,
    FERRY_MULTIPART_PORT: String(apiPort),
    FERRY_WORKER_PORT: String(workerPort),
    // a PUT cut by a kill holds its part until its lease lapses: short, so retries soon succeed (a
    // live PUT whose lease lapses, on a starved server, answers 409 and is retried like one)
    FERRY_LEASE_TTL_MS: '1000',
    // a killed worker's job is taken over when its lock lapses; a live worker renews it every half
    // of it, which a starved worker may miss (the job then runs twice, which it must survive, and
    // slower): long enough for a busy machine, short enough for a quick takeover
    FERRY_JOB_LOCK_MS: '5000',
    FERRY_MULTIPART_COMPLETE_WAIT_MS: '2000',
    FERRY_CLIENTS: JSON.stringify([{ clientId: 'crash', accessToken: TOKEN, scopes: ['*'] }]),
    FERRY_SIGNING_KEY: 'crash-test-signing-key-0123456789abcdef',
    FERRY_LOG_LEVEL: 'warn',
  });

  async function startApi(extra: Record<string, string> = {}): Promise<void> {
    api = startBuiltApp('multipart-api', { ...env(), ...extra }, true);
    await waitHttpReady(api, apiPort);
  }

  /** PUTs and adds every part of a new upload of `content`; its status. */
  async function uploadParts(content: Buffer, fileName: string, partSize: number): Promise<Status> {
    const start = (
      await client.start({
        fileName,
        contentType: 'application/octet-stream',
        contentMD5Hex: md5Hex(content),
        fileSizeBytes: content.length,
        partSizeBytes: partSize,
      })
    ).body as unknown as Status;
    const parts = start.partsState.length;
    const urls = (
      await client.urls(
        start.uploadId,
        Array.from({ length: parts }, (_, i) => i + 1),
      )
    ).body.partPresignedUrls;
    for (const u of urls) {
      const part = content.subarray((u.partNumber - 1) * partSize, u.partNumber * partSize);
      const put = await MultipartClient.put(u.uploadPresignedUrl, part);
      expect([put.status, put.body]).toEqual([200, '']);
      expect((await client.add(start.uploadId, u.partNumber, md5Hex(part))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    }
    return start;
  }

  async function startWorker(): Promise<void> {
    worker = startBuiltApp('assembler-worker', env(), true);
    await waitHttpReady(worker, workerPort);
  }

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-mp-crash');
    apiPort = await freePort();
    workerPort = await freePort();
    client = new MultipartClient({ base: `http://127.0.0.1:${apiPort}`, token: TOKEN });
    await Promise.all([startApi(), startWorker()]);
  });

  afterAll(async () => {
    await Promise.all([stopProcess(api), stopProcess(worker)]);
    await redis.stop();
    data.remove();
  });

  /** One cycle of the Python client; throws on any failure (the caller retries the cycle). */
  async function cycle(content: Buffer, fileName: string): Promise<Status> {
    const r = await client.upload(content, { fileName, partSizeBytes: PART }, 4);
    if (r.status !== 200 && r.status !== 201) throw new Error(`complete: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as Status;
  }

  async function handlesOf(sha256: string): Promise<string[]> {
    const conn = new IORedis(redis.url);
    try {
      return await conn.hkeys(`${redis.prefix}:blob:{${sha256}}:claims`);
    } finally {
      conn.disconnect();
    }
  }

  it('completes an upload whose multipart-api is killed three times during part PUTs', async () => {
    const content = patternBytes(160 * MiB + 12345, 5);
    const request = {
      fileName: 'crash-api.bin',
      contentType: 'application/octet-stream',
      contentMD5Hex: md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: PART,
    };
    let result: Status | undefined;
    const killedAt: string[] = [];
    // kill whenever a few more parts were added since the last kill, while parts are still missing
    const killer = (async () => {
      let added = 0;
      while (killedAt.length < 3 && !result) {
        await new Promise((r) => setTimeout(r, 20));
        const status = await client.start(request).catch(() => undefined);
        const parts = (status?.body as Status | undefined)?.partsState ?? '';
        const now = [...parts].filter((c) => c === '1').length;
        if (now >= added + 3 && parts.includes('0')) {
          await stopProcess(api);
          killedAt.push(parts);
          added = now;
          await startApi();
        }
      }
    })();
    // the client's cycle fails when the server is killed under it (and, then, while a PUT the kill
    // cut holds its part's lease); it is retried once the server answers again, as the client would
    for (let failures = 0; !result;) {
      try {
        result = await cycle(content, 'crash-api.bin');
      } catch (err) {
        if (++failures > 30) throw err;
        await waitFor('multipart-api to answer again', async () => (await fetch(`http://127.0.0.1:${apiPort}/readyz`)).status === 200);
        await sleep(300);
      }
    }
    await killer;
    expect(killedAt).toHaveLength(3);
    expect(result).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.any(String) });
    expect(await handlesOf(sha256Hex(content))).toEqual([`fileHandle/${result?.resultFileHandleId}`]);
    const url = await client.request('GET', `/file/fileHandle/${result?.resultFileHandleId}/url?redirect=false`);
    const body = Buffer.from(await (await fetch(String(url.body))).arrayBuffer());
    expect(sha256Hex(body)).toBe(sha256Hex(content));
  });

  it('completes an upload whose multipart-api is killed while it assembles it in complete, by the job it enqueued first', async () => {
    const content = patternBytes(96 * MiB + 5, 7);
    // another process holds the digests' lease: nothing is hashed as the parts land, so complete,
    // with everything left to hash (under FERRY_MULTIPART_INLINE_COMPLETE_BYTES), waits in
    // multipart-api for the lease, and is killed there
    const conn = new IORedis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue('assembly', { connection: conn, prefix: `{${redis.prefix}:bull}` });
    try {
      const request = { fileName: 'crash-complete.bin', partSize: 16 * MiB };
      const probe = (
        await client.start({
          fileName: request.fileName,
          contentType: 'application/octet-stream',
          contentMD5Hex: md5Hex(content),
          fileSizeBytes: content.length,
          partSizeBytes: request.partSize,
        })
      ).body as unknown as Status;
      // (the session's writer lease: whoever holds it advances the whole-file digests)
      const lease = `${redis.prefix}:up:{${probe.uploadId}}:lease`;
      await conn.set(lease, 'elsewhere', 'PX', 120_000);
      const start = await uploadParts(content, request.fileName, request.partSize);
      expect(start.uploadId).toBe(probe.uploadId);
      const completing = client.complete(start.uploadId).catch(() => undefined);
      // the safety net: the assembly job, enqueued delayed before multipart-api began assembling
      await waitFor(
        'multipart-api to enqueue the delayed job and begin assembling',
        async () => (await (await queue.getJob(`assemble-${start.uploadId}`))?.getState()) === 'delayed',
        { intervalMs: 5 },
      );
      await stopProcess(api);
      await completing;
      await conn.del(lease); // (its holder is gone too)
      await startApi();
      // nobody calls complete again: the job runs after its delay, on the worker, and completes it
      await waitFor(
        'the delayed job to complete the upload',
        async () => ((await client.status(start.uploadId)).body as Status).state === 'COMPLETED',
      );
      const done = (await client.status(start.uploadId)).body as Status;
      expect(await handlesOf(sha256Hex(content))).toEqual([`fileHandle/${done.resultFileHandleId}`]);
      expect((await client.request('GET', `/file/fileHandle/${done.resultFileHandleId}`)).body).toMatchObject({
        contentSha256: sha256Hex(content),
      });
    } finally {
      await queue.close();
      conn.disconnect();
    }
  });

  it('completes an upload whose worker is killed in the middle of the assembly, with exactly one file handle', async () => {
    // more left to hash than multipart-api takes on itself (here: anything): the worker assembles
    await stopProcess(api);
    await startApi({ FERRY_MULTIPART_INLINE_COMPLETE_BYTES: '0' });
    const content = patternBytes(192 * MiB + 3, 6);
    const start = await uploadParts(content, 'crash-worker.bin', 16 * MiB);
    // watch the job; kill the worker as soon as it is assembling
    const conn = new IORedis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue('assembly', { connection: conn, prefix: `{${redis.prefix}:bull}` });
    try {
      const completing = client.complete(start.uploadId);
      await waitFor(
        'the worker to be assembling',
        async () => (await (await queue.getJob(`assemble-${start.uploadId}`))?.getState()) === 'active',
        { intervalMs: 5 },
      );
      await stopProcess(worker);
      const first = await completing;
      expect(first.status).toBe(202); // the assembly did not finish: its worker died
      await startWorker();
      // the new worker takes the job over once the dead one's lock lapses, and assembles again
      let done = first;
      await waitFor(
        'the restarted worker to finish the assembly',
        async () => (done = await client.complete(start.uploadId)).status !== 202,
      );
      expect(done.body).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.any(String) });
      const handleId = (done.body as Status).resultFileHandleId;
      expect(await handlesOf(sha256Hex(content))).toEqual([`fileHandle/${handleId}`]);
      expect((await client.request('GET', `/file/fileHandle/${handleId}`)).body).toMatchObject({ contentSha256: sha256Hex(content) });
    } finally {
      await queue.close();
      conn.disconnect();
      await stopProcess(api);
      await startApi();
    }
  });
});
