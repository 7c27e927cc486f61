import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '@ferry/protocol';
import { malformedMessages, tolerantService } from './malformed-messages';

const identity = (b: Buffer) => b;
/** Not a protobuf message (a field whose value runs past the end): what `npm run fuzz` sent. */
const GARBAGE = Buffer.from('b0891137932cefebf8a4', 'hex');

describe('tolerantService + malformedMessages', () => {
  let server: grpc.Server;
  let client: grpc.Client;
  const seen: string[] = [];

  beforeAll(async () => {
    const { bytestream } = loadProtos();
    server = new grpc.Server({ interceptors: [malformedMessages] });
    server.addService(tolerantService(bytestream.ByteStream.service), {
      QueryWriteStatus: (call: grpc.ServerUnaryCall<{ resource_name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        seen.push(`QueryWriteStatus ${call.request.resource_name}`);
        cb(null, { committed_size: 1, complete: false });
      },
      Write: (call: grpc.ServerReadableStream<{ resource_name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        call.on('data', (m: { resource_name: string }) => seen.push(`Write data ${m.resource_name}`));
        call.on('cancelled', () => seen.push('Write cancelled'));
        call.on('end', () => cb(null, { committed_size: 0 }));
      },
      Read: (call: grpc.ServerWritableStream<unknown, unknown>) => call.end(),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  const unary = (bytes: Buffer) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest('/google.bytestream.ByteStream/QueryWriteStatus', identity, identity, bytes, (err) => resolve(err)),
    );

  it('answers a unary request that is no valid message INVALID_ARGUMENT, without calling the handler', async () => {
    seen.length = 0;
    const err = await unary(GARBAGE);
    expect({ code: err?.code, details: err?.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining('request is not a valid /google.bytestream.ByteStream/QueryWriteStatus message'),
    });
    expect(seen).toEqual([]);
  });

  it('still serves valid messages', async () => {
    seen.length = 0;
    const def = loadProtos().bytestream.ByteStream.service.QueryWriteStatus;
    expect(await unary(def.requestSerialize({ resource_name: 'uploads/x' }))).toBeNull();
    expect(seen).toEqual(['QueryWriteStatus uploads/x']);
  });

  it('ends a client stream at its first malformed message with INVALID_ARGUMENT; the handler hears it cancelled', async () => {
    seen.length = 0;
    const def = loadProtos().bytestream.ByteStream.service.Write;
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeClientStreamRequest('/google.bytestream.ByteStream/Write', identity, identity, (e) => resolve(e));
      call.write(def.requestSerialize({ resource_name: 'first' }));
      call.write(GARBAGE);
      call.write(def.requestSerialize({ resource_name: 'after' }));
      call.end();
    });
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual(['Write data first', 'Write cancelled']);
  });
});
