import * as http2 from 'node:http2';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath, service as healthService } from 'grpc-health-check';
import { queryWriteStatus } from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

describe('ingest-grpc server surface', () => {
  let h: IngestHarness;

  beforeAll(async () => {
    h = await startIngest();
  });

  afterAll(async () => {
    await h.close();
  });

  it('answers grpc.health.v1 Check with SERVING, for the server and for ByteStream', async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
    const client = new Health(h.address, grpc.credentials.createInsecure()) as unknown as {
      Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
      close(): void;
    };
    const check = (service: string) =>
      new Promise<string | undefined>((resolve, reject) => client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res?.status))));
    expect(healthProtoPath).toBeTruthy();
    expect(await check('')).toBe('SERVING');
    expect(await check('google.bytestream.ByteStream')).toBe('SERVING');
    await expect(check('no.such.Service')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    client.close();
  });

  it('lists ByteStream through server reflection', async () => {
    const reflectionProto = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
    const def = protoLoader.loadSync(reflectionProto, { keepCase: true, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client & {
        ServerReflectionInfo(): grpc.ClientDuplexStream<{ list_services: string }, { list_services_response?: { service: { name: string }[] } }>;
      } } } };
    };
    const client = new pkg.grpc.reflection.v1.ServerReflection(h.address, grpc.credentials.createInsecure());
    const call = client.ServerReflectionInfo();
    const response = new Promise<string[]>((resolve, reject) => {
      call.on('data', (msg: { list_services_response?: { service: { name: string }[] } }) =>
        resolve((msg.list_services_response?.service ?? []).map((s) => s.name)),
      );
      call.on('error', reject);
    });
    call.write({ list_services: '' });
    const names = await response;
    call.end();
    client.close();
    expect(names).toContain('google.bytestream.ByteStream');
  });

  it('advertises large HTTP/2 windows and frames to clients', async () => {
    const session = http2.connect(`http://${h.address}`);
    const settings = await new Promise<http2.Settings>((resolve, reject) => {
      session.once('remoteSettings', resolve);
      session.once('error', reject);
    });
    session.close();
    expect(settings.initialWindowSize).toBe(h.config.grpc.flowControlWindowBytes);
    expect(settings.maxFrameSize).toBe(1024 * 1024);
  });
});

describe('ingest-grpc without Redis', () => {
  it('answers UNAVAILABLE (retryable) instead of INTERNAL', async () => {
    const h = await startIngest();
    try {
      await h.redis.stop();
      const err = await queryWriteStatus(h.client, 'some/name').catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      await h.close();
    }
  }, 30_000);
});
