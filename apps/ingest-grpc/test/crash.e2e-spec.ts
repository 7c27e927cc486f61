/**
 * Crash test: ingest-grpc runs as a separate process (the built dist/apps/ingest-grpc) and is
 * killed with SIGKILL at random points of a large upload, several times per run, over several
 * runs with different kill points, for each protocol face: ByteStream Write, GCS v2 WriteObject
 * and GCS v2 BidiWriteObject (flushing every 16 MiB), on local disk and (fewer runs) on an S3 bucket
 * of s3rver with 5 MiB parts (the bytes after the last whole part committed as tail pieces). After
 * each restart the client resumes from QueryWriteStatus. Checks: no acknowledged byte is lost (the committed/persisted size never goes
 * below what was reported before the kill), it never exceeds what was sent, and the final object's
 * sha256 is right.
 */
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import type { BidiWriteObjectRequest, ByteStreamClient, GcsWriteObjectRequest, StorageClient } from '@ferry/protocol';
import {
  TempDir,
  TestRedis,
  TestS3,
  bidiWrite,
  byteStreamClient,
  chunkedRequests,
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
  startTestS3,
  stopProcess,
  storageClient,
  waitUntilReady,
  tempDir,
  WAIT_MS,
  sleep,
  writeObject,
  writeRequests,
} from '@ferry/testing';

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;
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

const isCode = (err: unknown, code: grpc.status) => (err as grpc.ServiceError).code === code;

/**
 * Resolves once `done()`. A large upload on a busy machine may take long, but it never stands still:
 * fails when `progress()` (a description of how far the upload got) stays the same for WAIT_MS.
 */
async function whileProgressing(what: string, done: () => boolean, progress: () => string): Promise<void> {
  let last = progress();
  let movedAt = Date.now();
  while (!done()) {
    const now = progress();
    if (now !== last) {
      last = now;
      movedAt = Date.now();
    } else if (Date.now() - movedAt > WAIT_MS) {
      throw new Error(`no progress for ${WAIT_MS} ms (at ${now}) waiting for ${what}`);
    }
    await sleep(2);
  }
}

/** One upload as a protocol face sees it. */
interface Upload {
  /** Committed (persisted) size, and whether the upload is complete. */
  status(): Promise<{ committed: number; complete: boolean }>;
  /** Streams `requests` (data from `from` on) and returns the final size once finished. */
  send(from: number, stopAfter: number, onSent: (end: number) => void): Promise<unknown>;
  read(): Promise<Buffer>;
}

interface Face {
  label: string;
  runs: number;
  begin(run: number): Promise<Upload>;
}

/** Yields `requests` until one ends at or past `stopAfter`, reporting each end offset. */
function* until<R>(requests: Iterable<R>, endOf: (r: R) => number, stopAfter: number, onSent: (end: number) => void): Generator<R> {
  for (const req of requests) {
    // counted as sent before it is handed over: the server may commit it (a flush answered before
    // the stream asks for the next request) before this generator runs again
    const end = endOf(req);
    onSent(end);
    yield req;
    if (end >= stopAfter) return;
  }
}

describe.each([
  { storage: 'local disk', s3: false, runs: (n: number) => n },
  { storage: 'S3 (s3rver)', s3: true, runs: (n: number) => Math.min(n, 2) },
])('ingest-grpc survives kill -9 during uploads on $storage', ({ s3: onS3, runs }) => {
  let redis: TestRedis;
  let data: TempDir;
  let s3: TestS3 | undefined;
  let port: number;
  let server: ChildProcess | undefined;
  let client: ByteStreamClient;
  let storage: StorageClient;
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
        ...(s3 ? { ...s3.env, FERRY_S3_PART_SIZE: String(5 * MiB) } : {}),
      },
      true,
    );
    server = child;
    // ready when it answers: NOT_FOUND for a name nobody wrote
    await waitUntilReady(
      child,
      async () => {
        try {
          await queryWriteStatus(client, 'crash/probe');
          return true;
        } catch (err) {
          return isCode(err, grpc.status.NOT_FOUND);
        }
      },
      'ingest-grpc',
    );
  }

  function kill9(): Promise<void> {
    return stopProcess(server);
  }

  beforeAll(async () => {
    redis = await startTestRedis();
    data = tempDir('ferry-crash');
    if (onS3) s3 = await startTestS3('crash');
    port = await freePort();
    client = byteStreamClient(`127.0.0.1:${port}`);
    storage = storageClient(`127.0.0.1:${port}`);
    await startServer();
  });

  afterAll(async () => {
    await kill9();
    client.close();
    storage.close();
    await redis.stop();
    await s3?.stop();
    data.remove();
  });

  const byteStream: Face = {
    label: 'ByteStream Write',
    runs: 6,
    begin: async (run) => {
      const name = `crash/run-${run}.bin`;
      return {
        status: async () => {
          try {
            const s = await queryWriteStatus(client, name);
            return { committed: s.committed_size, complete: s.complete };
          } catch (err) {
            if (isCode(err, grpc.status.NOT_FOUND)) return { committed: 0, complete: false };
            throw err;
          }
        },
        send: (from, stopAfter, onSent) =>
          writeRequests(
            client,
            until(
              chunkedRequests(name, content, { offset: from, chunk: 2 * MiB }),
              (r) => Number(r.write_offset) + (r.data as Buffer).length,
              stopAfter,
              onSent,
            ),
          ),
        read: async () => (await readBytes(client, name)).data,
      };
    },
  };

  const gcsStatus = async (id: string) => {
    const s = await gcsQueryWriteStatus(storage, id);
    return s.write_status === 'resource'
      ? { committed: Number(s.resource?.size), complete: true }
      : { committed: Number(s.persisted_size), complete: false };
  };
  const endOfGcs = (r: GcsWriteObjectRequest | BidiWriteObjectRequest) =>
    Number(r.write_offset) + (r.checksummed_data?.content as Buffer).length;

  const gcsWrite: Face = {
    label: 'GCS v2 WriteObject',
    runs: 3,
    begin: async (run) => {
      const object = `write-${run}.bin`;
      const id = await startResumableWrite(storage, 'crash', object);
      return {
        status: () => gcsStatus(id),
        send: (from, stopAfter, onSent) =>
          writeObject(storage, until(gcsRequests(content, { first: { upload_id: id }, offset: from }), endOfGcs, stopAfter, onSent)),
        read: async () => (await readObject(storage, 'crash', object)).data,
      };
    },
  };

  const gcsBidi: Face = {
    label: 'GCS v2 BidiWriteObject, flush every 16 MiB',
    runs: 3,
    begin: async (run) => {
      const object = `bidi-${run}.bin`;
      const id = await startResumableWrite(storage, 'crash', object);
      return {
        status: () => gcsStatus(id),
        send: (from, stopAfter, onSent) => {
          const flushing = function* (): Generator<BidiWriteObjectRequest> {
            for (const r of gcsRequests(content, { first: { upload_id: id }, offset: from })) {
              const end = endOfGcs(r);
              yield r.finish_write || end % (16 * MiB) !== 0 ? r : { ...r, flush: true, state_lookup: true };
            }
          };
          return bidiWrite(storage, until(flushing(), endOfGcs, stopAfter, onSent));
        },
        read: async () => (await readObject(storage, 'crash', object)).data,
      };
    },
  };

  describe.each([byteStream, gcsWrite, gcsBidi])('$label', (face) => {
    it.each(Array.from({ length: runs(face.runs) }, (_, i) => i + 1))(
      'run %i: kills at random points, resumes, and lands the exact bytes',
      async (run) => {
        const random = rng(run + face.label.length * 100);
        const upload = await face.begin(run);
        let acknowledged = 0; // highest committed size the server reported before a kill
        let sent = 0; // bytes handed to the current stream so far (end offset)
        // the highest end offset ever handed to a stream: a resume lowers `sent` to where it starts,
        // while a commit of the stream before it (a writer closing after ABORTED) may still land
        let everSent = 0;
        let overcommitted = 0; // a committed size above what was ever sent: must stay 0
        const resumedAt: number[] = [];
        const polling = setInterval(() => {
          upload.status().then(
            (s) => {
              if (!s.complete && s.committed > everSent) overcommitted = s.committed;
              acknowledged = Math.max(acknowledged, s.committed);
            },
            () => undefined,
          );
        }, 20);
        try {
          for (let kill = 0; kill <= KILLS_PER_RUN; kill++) {
            const last = kill === KILLS_PER_RUN;
            const resumeAt = (await upload.status()).committed;
            expect(resumeAt).toBeGreaterThanOrEqual(acknowledged); // nothing acknowledged was lost
            if (kill > 0) resumedAt.push(resumeAt);
            // kill after a random number of further bytes have been handed to the stream
            // (on S3 at least a part further, so that every stream crosses a part boundary)
            const killAfter = last ? Infinity : resumeAt + (onS3 ? 6 : 1) * MiB + Math.floor(random() * (SIZE - resumeAt) * 0.8);
            const writing = writeFrom(upload, killAfter, (end) => {
              sent = end;
              everSent = Math.max(everSent, end);
            });
            if (last) {
              await writing;
              break;
            }
            // kill once the stream passed its kill point and the server acknowledged some progress on
            // this stream (so every run really resumes from a partial size); a stream that ended first
            // (it stopped at its kill point, or the upload is complete) is killed at once, and one that
            // failed before the kill fails the run
            const stream: { ended: boolean; failure?: { err: unknown } } = { ended: false };
            writing.then(
              () => (stream.ended = true),
              (err: unknown) => (stream.failure = { err }),
            );
            await whileProgressing(
              `the stream to pass byte ${killAfter} and the server to acknowledge more than ${resumeAt} (kill ${kill + 1})`,
              () => stream.ended || stream.failure !== undefined || (sent >= killAfter && acknowledged > resumeAt),
              () => `sent ${sent}, acknowledged ${acknowledged}`,
            );
            if (stream.failure) throw stream.failure.err;
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
        expect(await upload.status()).toEqual({ committed: SIZE, complete: true });
        expect(sha256Hex(await upload.read())).toBe(expectedSha);
      },
    );
  });

  /**
   * Streams `content` from the committed size until `stopAfter` bytes were handed over.
   * ABORTED is retried, from the committed size again: a restarted server still sees the killed
   * writer's lease for up to its TTL, and a writer stalled on a busy machine may take its own (short)
   * lease for lost. Either resolves by itself: ABORTED for WAIT_MS without the committed size moving
   * fails.
   */
  async function writeFrom(upload: Upload, stopAfter: number, onSent: (end: number) => void): Promise<void> {
    let from = -1;
    let movedAt = Date.now();
    for (;;) {
      const committed = (await upload.status()).committed;
      if (committed !== from) {
        from = committed;
        movedAt = Date.now();
      }
      onSent(from);
      try {
        await upload.send(from, stopAfter, onSent);
        return;
      } catch (err) {
        if (!isCode(err, grpc.status.ABORTED) || Date.now() - movedAt > WAIT_MS) throw err;
        await sleep(200);
      }
    }
  }
});
