/**
 * Crash test: ingest-grpc runs as a separate process (the built dist/apps/ingest-grpc) and is
 * killed with SIGKILL at random points of a large upload, several times per run, over ten runs
 * with different kill points. After each restart the client resumes from QueryWriteStatus.
 * Checks: no acknowledged byte is lost (committed_size never goes below what was reported before
 * the kill), committed_size never exceeds what was sent, and the final object's sha256 is right.
 */
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import type { ByteStreamClient } from '@ferry/protocol';
import {
  TempDir,
  TestRedis,
  byteStreamClient,
  chunkedRequests,
  freePort,
  patternBytes,
  queryWriteStatus,
  readBytes,
  sha256Hex,
  startBuiltApp,
  startTestRedis,
  stopProcess,
  waitUntilReady,
  tempDir,
  writeRequests,
} from '@ferry/testing';

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;
const RUNS = 10;
const KILLS_PER_RUN = 3;

/** A small deterministic PRNG so each run's kill points are reproducible from its seed. */
function rng(seed: number): () => number {
  let x = seed * 2654435761 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe('ingest-grpc survives kill -9 during uploads', () => {
  let redis: TestRedis;
  let data: TempDir;
  let port: number;
  let server: ChildProcess | undefined;
  let client: ByteStreamClient;
  const content = patternBytes(SIZE, 99);
  const expectedSha = sha256Hex(content);

  async function startServer(): Promise<void> {
    const child = startBuiltApp(
      'ingest-grpc',
      {
        FERRY_GRPC_PORT: String(port),
        REDIS_URL: redis.url,
        FERRY_REDIS_PREFIX: redis.prefix,
        FERRY_DATA_DIR: data.path,
        FERRY_LEASE_TTL_MS: '1000',
        FERRY_LOG_LEVEL: 'warn',
      },
      true,
    );
    server = child;
    // ready when it answers: NOT_FOUND for a name nobody wrote
    await waitUntilReady(child, async () => {
      try {
        await queryWriteStatus(client, 'crash/probe');
        return true;
      } catch (err) {
        return (err as grpc.ServiceError).code === grpc.status.NOT_FOUND;
      }
    }, 'ingest-grpc');
  }

  function kill9(): Promise<void> {
    return stopProcess(server);
  }

  async function committed(name: string): Promise<number> {
    try {
      return (await queryWriteStatus(client, name)).committed_size;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return 0;
      throw err;
    }
  }

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-crash');
    port = await freePort();
    client = byteStreamClient(`127.0.0.1:${port}`);
    await startServer();
  });

  afterAll(async () => {
    await kill9();
    client.close();
    await redis.stop();
    data.remove();
  });

  it.each(Array.from({ length: RUNS }, (_, i) => i + 1))('run %i: kills at random points, resumes, and lands the exact bytes', async (run) => {
    const random = rng(run);
    const name = `crash/run-${run}.bin`;
    let acknowledged = 0; // highest committed_size the server reported before a kill
    let sent = 0; // bytes handed to the current stream so far (end offset)
    let overcommitted = 0; // a committed_size above what was ever sent: must stay 0
    const resumedAt: number[] = [];
    const polling = setInterval(() => {
      const sentBefore = sent;
      queryWriteStatus(client, name).then(
        (s) => {
          if (!s.complete && s.committed_size > Math.max(sentBefore, sent)) overcommitted = s.committed_size;
          acknowledged = Math.max(acknowledged, s.committed_size);
        },
        () => undefined,
      );
    }, 20);
    try {
      for (let kill = 0; kill <= KILLS_PER_RUN; kill++) {
        const last = kill === KILLS_PER_RUN;
        // kill after a random number of further bytes have been handed to the stream
        const resumeAt = await committed(name);
        expect(resumeAt).toBeGreaterThanOrEqual(acknowledged); // nothing acknowledged was lost
        if (kill > 0) resumedAt.push(resumeAt);
        const killAfter = last ? Infinity : resumeAt + MiB + Math.floor(random() * (SIZE - resumeAt) * 0.8);
        const writing = writeFrom(name, killAfter, (end) => (sent = end));
        if (last) {
          expect(await writing).toBe(SIZE);
          break;
        }
        // kill once the stream passed its kill point and the server acknowledged some progress on
        // this stream (so every run really resumes from a partial size)
        const deadline = Date.now() + 30_000;
        while ((sent < killAfter || acknowledged <= resumeAt) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
        await kill9();
        await writing.catch(() => undefined);
        await startServer();
      }
    } finally {
      clearInterval(polling);
    }
    expect(overcommitted).toBe(0);
    // the kills really interrupted uploads in the middle: resumes started from partial sizes
    expect(resumedAt.some((at) => at > 0 && at < SIZE)).toBe(true);
    expect(await queryWriteStatus(client, name)).toEqual({ committed_size: SIZE, complete: true });
    expect(sha256Hex((await readBytes(client, name)).data)).toBe(expectedSha);
  });

  /**
   * Streams `content` from the committed size until `stopAfter` bytes were handed over.
   * A restarted server still sees the killed writer's lease for up to its TTL: ABORTED is retried.
   */
  async function writeFrom(name: string, stopAfter: number, onSent: (end: number) => void): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const from = await committed(name);
      onSent(from);
      const requests = (function* () {
        for (const req of chunkedRequests(name, content, { offset: from, chunk: 2 * MiB })) {
          yield req;
          const end = Number(req.write_offset) + (req.data as Buffer).length;
          onSent(end);
          if (end >= stopAfter) return;
        }
      })();
      try {
        return await writeRequests(client, requests);
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.ABORTED || attempt > 50) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
});
