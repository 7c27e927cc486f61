import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
    stop: async () => {
      server.httpServer?.closeAllConnections();
      await server.close();
      dir.remove();
    },
  };
}

interface S3rverObject {
  content: unknown;
  metadata?: Record<string, string | undefined>;
}

/**
 * S3 never shows a partial object, and replacing an object is atomic: readers see the old one until
 * the new one is complete (Ferry's S3 staging relies on it when a resumed upload writes again the
 * object that holds its committed tail). s3rver writes a PUT's body straight into the object's file,
 * so a client killed mid-PUT would leave the object cut short. Here the body is received whole
 * first: a PUT cut short stores nothing and the previous object stays, as on S3.
 */
function makePutAtomic(server: S3rverInstance): void {
  const store = (server as unknown as { store: { putObject(o: S3rverObject): Promise<unknown> } }).store;
  const put = store.putObject.bind(store);
  store.putObject = async (object) => {
    // (only a client's request body: the store's own streams, e.g. completing a multipart upload, go as they are)
    if (object.content instanceof IncomingMessage) {
      const chunks: Buffer[] = [];
      for await (const chunk of object.content as AsyncIterable<Buffer>) chunks.push(chunk);
      const body = Buffer.concat(chunks);
      const declared = Number(object.metadata?.['x-amz-decoded-content-length'] ?? object.metadata?.['content-length']);
      if (Number.isFinite(declared) && body.length < declared) throw new Error(`PUT cut short: ${body.length} of ${declared} bytes`);
      object.content = body;
    }
    return put(object);
  };
}
