import * as grpc from '@grpc/grpc-js';
import { ByteStreamClient, WriteRequest, loadProtos } from '@ferry/protocol';

/** A real grpc-js ByteStream client, built from the same protos the server loads (plaintext unless `credentials` say TLS). */
export function byteStreamClient(address: string, credentials = grpc.credentials.createInsecure()): ByteStreamClient {
  const { bytestream } = loadProtos();
  return new bytestream.ByteStream(address, credentials, {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
}

export function bearer(token = 'dev-secret'): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

export interface GrpcFailure extends Error {
  code: grpc.status;
  details: string;
}

/**
 * Writes `requests` to a client-streaming call in order, honouring backpressure, then half-closes.
 * If the source throws, the call is cancelled and the error rethrown.
 */
export async function streamRequests<T>(call: grpc.ClientWritableStream<T>, requests: Iterable<T> | AsyncIterable<T>): Promise<void> {
  try {
    for await (const req of requests) {
      if (!call.write(req)) await new Promise((r) => call.once('drain', r));
    }
    call.end();
  } catch (err) {
    call.cancel();
    throw err;
  }
}

/** Sends the requests in order (honouring backpressure), half-closes, and returns the committed size. */
export function writeRequests(
  client: ByteStreamClient,
  requests: Iterable<WriteRequest> | AsyncIterable<WriteRequest>,
  metadata: grpc.Metadata = bearer(),
  options: grpc.CallOptions = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = client.Write(metadata, options, (err, res) => (err ? reject(err) : resolve(Number(res?.committed_size))));
    streamRequests(call, requests).catch(reject);
  });
}

/** WriteRequests for `data` from `offset`, in `chunk`-byte messages, finishing on the last. */
export function* chunkedRequests(
  name: string,
  data: Buffer,
  { offset = 0, chunk = 2 * 1024 * 1024, finish = true, nameOnEvery = false } = {},
): Generator<WriteRequest> {
  let first = true;
  if (offset >= data.length) {
    yield { resource_name: name, write_offset: offset, finish_write: finish, data: Buffer.alloc(0) };
    return;
  }
  for (let pos = offset; pos < data.length; pos += chunk) {
    const end = Math.min(pos + chunk, data.length);
    yield {
      resource_name: first || nameOnEvery ? name : '',
      write_offset: pos,
      finish_write: finish && end === data.length,
      data: data.subarray(pos, end),
    };
    first = false;
  }
}

export function uploadBytes(client: ByteStreamClient, name: string, data: Buffer, metadata = bearer()): Promise<number> {
  return writeRequests(client, chunkedRequests(name, data), metadata);
}

export async function readBytes(
  client: ByteStreamClient,
  name: string,
  { offset = 0, limit = 0, metadata = bearer() } = {},
): Promise<{ data: Buffer; chunks: number[] }> {
  const call = client.Read({ resource_name: name, read_offset: offset, read_limit: limit }, metadata);
  const parts: Buffer[] = [];
  for await (const msg of call) parts.push((msg as { data: Buffer }).data);
  return { data: Buffer.concat(parts), chunks: parts.map((p) => p.length) };
}

export function queryWriteStatus(
  client: ByteStreamClient,
  name: string,
  metadata = bearer(),
): Promise<{ committed_size: number; complete: boolean }> {
  return new Promise((resolve, reject) =>
    client.QueryWriteStatus({ resource_name: name }, metadata, (err, res) =>
      err || !res ? reject(err) : resolve({ committed_size: Number(res.committed_size), complete: res.complete }),
    ),
  );
}

type UnaryMethod = (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => unknown;

/** Calls unary method `method` of a grpc-js client; resolves with the response as `Res`. */
export function unaryCall<Res>(client: grpc.Client, method: string, req: object, metadata: grpc.Metadata): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  return new Promise((resolve, reject) =>
    fn.call(client, req, metadata, (err, res) => (err || res === undefined ? reject(err) : resolve(res as Res))),
  );
}
