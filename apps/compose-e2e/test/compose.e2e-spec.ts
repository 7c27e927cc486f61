/**
 * The docker compose stack (docker-compose.yml, deploy/Dockerfile) as users run it, driven from the
 * host through its published ports: an upload through every face of Ferry (ByteStream, REAPI CAS,
 * GCS WriteObject and BidiWriteObject, multipart parts, the object API with Hawk, tus), each read
 * back through every read path that can name it (ByteStream Read, GCS ReadObject, the object API's
 * signed download URL, a multipart file handle's URL: MinIO's presigned URLs as clients reach it);
 * a ByteStream upload resumed across a restart of the ingest-grpc container; zstd served (the image
 * has the addon); and the objects in the S3 bucket (Ferry stores through the S3 backend). `npm run test:compose` (tools/compose/test.mjs)
 * brings the stack up before and down after; FERRY_COMPOSE is its compose command line (JSON).
 */
import { execFileSync } from 'node:child_process';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { ByteStreamClient, ServerCapabilities__Output, StorageClient } from '@ferry/protocol';
import {
  FaceContext,
  UploadFace,
  bearer,
  byteStreamClient,
  patternBytes,
  queryWriteStatus,
  readEverywhere,
  reapiClients,
  sha256Hex,
  storageClient,
  unaryCall,
  uploadFaces,
  waitFor,
} from '@ferry/testing';

const MiB = 1024 * 1024;
const compose: string[] = JSON.parse(process.env.FERRY_COMPOSE ?? '["docker","compose"]');
const GRPC = '127.0.0.1:50051';
const S3 = { endpoint: 'http://127.0.0.1:9000', bucket: 'ferry', accessKeyId: 'ferry', secretAccessKey: 'ferry-minio-secret' };

let clients: { byteStream: ByteStreamClient; storage: StorageClient } | undefined;
function renewClients(): void {
  clients?.byteStream.close();
  clients?.storage.close();
  clients = { byteStream: byteStreamClient(GRPC), storage: storageClient(GRPC) };
}
const ctx: FaceContext = {
  byteStream: () => (clients as NonNullable<typeof clients>).byteStream,
  storage: () => (clients as NonNullable<typeof clients>).storage,
  multipartBase: 'http://127.0.0.1:8081',
  objectBase: 'http://127.0.0.1:8080',
};

function composeRun(...args: string[]): string {
  return execFileSync(compose[0], [...compose.slice(1), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function health(service: string): string {
  const id = composeRun('ps', '-q', service).trim();
  return execFileSync('docker', ['inspect', '-f', '{{.State.Health.Status}}', id], { encoding: 'utf8' }).trim();
}

let seed = 1;
const fresh = (size: number) => patternBytes(size, 104729 * seed++);
const digestOf = (b: Buffer) => `${b.length} bytes, sha256 ${sha256Hex(b)}`;

/** Every read path that can name `name` answers `content` (sha256); the object API's download (S3 presigned URL) is one. */
async function expectReadBack(name: string, content: Buffer): Promise<void> {
  const reads = await readEverywhere(ctx, name);
  const got = Object.fromEntries(Object.entries(reads).map(([p, r]) => [p, r.found ? digestOf(r.data) : `not found: ${r.error.message}`]));
  expect(got).toEqual(Object.fromEntries(Object.keys(reads).map((p) => [p, digestOf(content)])));
  expect(Object.keys(reads)).toContain('object API download');
}

beforeAll(() => renewClients());
afterAll(() => {
  clients?.byteStream.close();
  clients?.storage.close();
});

describe('docker compose stack', () => {
  const faces = uploadFaces(ctx);

  it.each(faces.map((f) => [f.label, f] as [string, UploadFace]))(
    'uploads through %s and reads it back everywhere',
    async (_label, face) => {
      const content = fresh(12 * MiB + 4321);
      const upload = await face.begin(content);
      const name = await upload.finish();
      await expectReadBack(name, content);
    },
  );

  it('resumes a ByteStream upload across a restart of the ingest-grpc container', async () => {
    const face = faces.find((f) => f.name === 'bytestream') as UploadFace;
    const content = fresh(24 * MiB + 4321);
    const upload = await face.begin(content);
    const cutAt = 20 * MiB;
    const sending = upload.send(0, cutAt, { hold: true });
    await sending.handed;
    // the stack's S3 part size (8 MiB by default): at least one part is durable before the restart
    let acknowledged = 0;
    await waitFor('ingest-grpc to report a part persisted', async () => (acknowledged = await upload.persisted()) >= 8 * MiB, {
      timeoutMs: 60_000,
    });

    composeRun('restart', 'ingest-grpc');
    sending.cut();
    await sending.done.catch(() => undefined);
    await waitFor('ingest-grpc to be healthy again', () => health('ingest-grpc') === 'healthy', { timeoutMs: 120_000, intervalMs: 1000 });
    renewClients();
    await waitFor('ingest-grpc to answer', () =>
      queryWriteStatus(ctx.byteStream(), 'compose/readiness-probe').then(
        () => true,
        (err: { code?: number }) => err.code === 5, // NOT_FOUND: it serves
      ),
    );

    const after = await upload.persisted();
    expect(after).toBeGreaterThanOrEqual(acknowledged);
    expect(after).toBeLessThanOrEqual(cutAt);
    const name = await upload.finish();
    await expectReadBack(name, content);
  });

  it('serves zstd: the image carries the zstd-napi addon its build stage compiled (REAPI capabilities advertise it)', async () => {
    const reapi = reapiClients(GRPC);
    try {
      const caps = await unaryCall<ServerCapabilities__Output>(reapi.capabilities, 'GetCapabilities', { instance_name: '' }, bearer());
      expect(caps.cache_capabilities?.supported_compressors).toEqual(['ZSTD']);
    } finally {
      reapi.close();
    }
  });

  it('stored the objects in the S3 bucket (MinIO)', async () => {
    const s3 = new S3Client({
      endpoint: S3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: S3.accessKeyId, secretAccessKey: S3.secretAccessKey },
    });
    try {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: S3.bucket }));
      const bytes = (page.Contents ?? []).reduce((sum, o) => sum + (o.Size ?? 0), 0);
      // eight uploads of at least 12 MiB, stored once each at least
      expect(bytes).toBeGreaterThanOrEqual(faces.length * 12 * MiB);
    } finally {
      s3.destroy();
    }
  });
});
