import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tempDir } from './temp-dir';

/** An S3-compatible server for tests: npm `s3rver` on a loopback port, its data in a temp dir. */
export interface TestS3 {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The variables that point a Ferry app at it (FERRY_STORAGE=s3 and FERRY_S3_*). */
  env: Record<string, string>;
  /** The keys in the bucket under `prefix`, in order (what a test expects the store to hold). */
  keys(prefix?: string): Promise<string[]>;
  /**
   * Answers every GET and HEAD `ms` later than it looked (0: at once), as a distant store does:
   * what a reader was told may have changed by the time it hears it.
   */
  delayReads(ms: number): void;
  stop(): Promise<void>;
}

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}

type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance;

/** Starts s3rver with one bucket. Its credentials are fixed (S3RVER/S3RVER) and it checks SigV4 signatures. */
export async function startTestS3(bucket = 'ferry-test'): Promise<TestS3> {
  const S3rver = require('s3rver') as S3rverClass;
  const dir = tempDir('ferry-s3rver');
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir.path, configureBuckets: [{ name: bucket }] });
  makePutAtomic(server);
  const reads = delayableReads(server);
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  return {
    endpoint,
    bucket,
    ...credentials,
    env: {
      FERRY_STORAGE: 's3',
      FERRY_S3_ENDPOINT: endpoint,
      FERRY_S3_BUCKET: bucket,
      FERRY_S3_REGION: 'us-east-1',
      FERRY_S3_ACCESS_KEY_ID: credentials.accessKeyId,
      FERRY_S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      FERRY_S3_FORCE_PATH_STYLE: 'true',
    },
    keys: async (prefix = '') => {
      const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
      try {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
        return (page.Contents ?? []).map((o) => o.Key as string);
      } finally {
        client.destroy();
      }
    },
    delayReads: (ms) => (reads.delayMs = ms),
    stop: async () => {
      server.httpServer?.closeAllConnections();
      await server.close();
      dir.remove();
    },
  };
}

interface S3rverObject {
  bucket: string;
  key: string;
  content: unknown;
  metadata?: Record<string, string | undefined>;
}

interface S3rverStore {
  putObject(o: S3rverObject): Promise<{ size: number; md5: string }>;
  getResourcePath(bucket: string, key: string, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: Record<string, string | undefined> | undefined, md5: string): Promise<void>;
}

/**
 * S3 never shows a partial object, and replacing an object is atomic: readers see the old one until
 * the new one is complete (Ferry's S3 staging relies on it when a resumed upload writes again the
 * object that holds its committed tail), and a PUT is answered once the object is stored (a read
 * right after it sees all of it). s3rver writes a PUT's body straight into the object's file, so a
 * client killed mid-PUT would leave the object cut short; and it answers before that file is
 * written, so a copy or read just after the answer (the object API's finish, a multipart
 * assembly) could see a part of it. Here the body is received whole first (a PUT cut short stores
 * nothing and the previous object stays), then written to a file of its own that is renamed over
 * the object's before the PUT is answered; objects the store makes itself (completing a multipart
 * upload) are written the same way.
 */
function makePutAtomic(server: S3rverInstance): void {
  const store = (server as unknown as { store: S3rverStore }).store;
  store.putObject = async (object) => {
    let content = object.content as Buffer | Readable;
    if (content instanceof IncomingMessage) {
      const chunks: Buffer[] = [];
      for await (const chunk of content as AsyncIterable<Buffer>) chunks.push(chunk);
      const body = Buffer.concat(chunks);
      const declared = Number(object.metadata?.['x-amz-decoded-content-length'] ?? object.metadata?.['content-length']);
      if (Number.isFinite(declared) && body.length < declared) throw new Error(`PUT cut short: ${body.length} of ${declared} bytes`);
      content = body;
    }
    const path = store.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(dirname(path), { recursive: true });
    const partial = `${path}.${randomBytes(6).toString('hex')}.partial`; // (listings take only names ending in ._S3rver_object)
    const md5 = createHash('md5');
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(Buffer.isBuffer(content) ? Readable.from([content]) : content, count, createWriteStream(partial));
      await rename(partial, path);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}

/** s3rver answers GET and HEAD from `store.getObject`: a delay after it resolves delays the answer, not the look. */
function delayableReads(server: S3rverInstance): { delayMs: number } {
  const store = (server as unknown as { store: { getObject(...args: unknown[]): Promise<unknown> } }).store;
  const get = store.getObject.bind(store);
  const knob = { delayMs: 0 };
  store.getObject = async (...args) => {
    const found = await get(...args);
    if (knob.delayMs > 0) await new Promise((r) => setTimeout(r, knob.delayMs));
    return found;
  };
  return knob;
}
