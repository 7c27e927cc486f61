import * as http2 from 'node:http2';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath, service as healthService } from 'grpc-health-check';
import { queryWriteStatus, readBytes, uploadBytes } from '@ferry/testing';
import { MetricsServer } from './metrics-server.service';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

describe('ingest-grpc server surface', () => {
  let h: IngestHarness;

  beforeAll(async () => {
    h = await startIngest();
  });

  afterAll(async () => {
    await h.close();
  });

  it('answers grpc.health.v1 Check with SERVING, for the server, ByteStream and Storage', async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
    const client = new Health(h.address, grpc.credentials.createInsecure()) as unknown as {
      Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
      close(): void;
    };
    const check = (service: string) =>
      new Promise<string | undefined>((resolve, reject) =>
        client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res?.status))),
      );
    expect(healthProtoPath).toBeTruthy();
    expect(await check('')).toBe('SERVING');
    expect(await check('google.bytestream.ByteStream')).toBe('SERVING');
    expect(await check('google.storage.v2.Storage')).toBe('SERVING');
    for (const reapi of ['Capabilities', 'ContentAddressableStorage', 'ActionCache']) {
      expect(await check(`build.bazel.remote.execution.v2.${reapi}`)).toBe('SERVING');
    }
    await expect(check('no.such.Service')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    client.close();
  });

  it('lists ByteStream and Storage through server reflection', async () => {
    const reflectionProto = join(
      dirname(require.resolve('@grpc/reflection/package.json')),
      'build',
      'proto',
      'grpc',
      'reflection',
      'v1',
      'reflection.proto',
    );
    const def = protoLoader.loadSync(reflectionProto, { keepCase: true, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: {
        reflection: {
          v1: {
            ServerReflection: new (
              address: string,
              creds: grpc.ChannelCredentials,
            ) => grpc.Client & {
              ServerReflectionInfo(): grpc.ClientDuplexStream<
                { list_services: string },
                { list_services_response?: { service: { name: string }[] } }
              >;
            };
          };
        };
      };
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
    expect(names).toEqual(
      expect.arrayContaining(['google.bytestream.ByteStream', 'google.storage.v2.Storage', 'build.bazel.remote.execution.v2.ActionCache']),
    );
  });

  it('serves Prometheus metrics of the upload engine on its HTTP listener', async () => {
    const base = `http://127.0.0.1:${h.app.get(MetricsServer).port}`;
    const data = Buffer.alloc(3 * 1024 * 1024, 7);
    await uploadBytes(h.client, 'metrics/one.bin', data);
    await readBytes(h.client, 'metrics/one.bin');
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = (metric: string) =>
      Number(new RegExp(`^${metric.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    expect(value('ferry_upload_bytes_received_total{protocol="bytestream"}')).toBeGreaterThanOrEqual(data.length);
    expect(value('ferry_download_bytes_sent_total{protocol="bytestream"}')).toBeGreaterThanOrEqual(data.length);
    expect(value('ferry_uploads_completed_total{protocol="bytestream"}')).toBeGreaterThanOrEqual(1);
    expect(value('ferry_upload_streams_total{protocol="bytestream",resumed="false"}')).toBeGreaterThanOrEqual(1);
    expect(value('ferry_upload_commit_seconds_count{protocol="bytestream"}')).toBeGreaterThanOrEqual(1);
    expect(text).toContain('ferry_process_cpu_seconds_total');
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
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
  });
});
