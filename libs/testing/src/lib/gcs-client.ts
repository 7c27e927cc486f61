import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import {
  BidiWriteObjectRequest,
  BidiWriteObjectResponse__Output,
  GcsObject__Output,
  GcsQueryWriteStatusResponse__Output,
  GcsWriteObjectRequest,
  GcsWriteObjectResponse__Output,
  ReadObjectRequest,
  ReadObjectResponse__Output,
  StorageClient,
  loadProtos,
} from '@ferry/protocol';
import { bearer, streamRequests, unaryCall } from './bytestream-client';

/** A real grpc-js google.storage.v2.Storage client, built from the official storage.proto. */
export function storageClient(address: string): StorageClient {
  const { storage } = loadProtos();
  return new storage.Storage(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
}

export const bucketResource = (bucket: string) => `projects/_/buckets/${bucket}`;

export interface SpecOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  ifGenerationMatch?: number;
  ifGenerationNotMatch?: number;
  objectSize?: number;
}

export function writeSpec(bucket: string, object: string, o: SpecOptions = {}) {
  return {
    resource: { bucket: bucketResource(bucket), name: object, content_type: o.contentType ?? '', metadata: o.metadata ?? {} },
    ...(o.ifGenerationMatch !== undefined ? { if_generation_match: o.ifGenerationMatch } : {}),
    ...(o.ifGenerationNotMatch !== undefined ? { if_generation_not_match: o.ifGenerationNotMatch } : {}),
    ...(o.objectSize !== undefined ? { object_size: o.objectSize } : {}),
  };
}

export function startResumableWrite(
  client: StorageClient,
  bucket: string,
  object: string,
  o: SpecOptions & { checksums?: { crc32c?: number; md5_hash?: Buffer } } = {},
  metadata = bearer(),
): Promise<string> {
  return unaryCall<{ upload_id: string }>(
    client,
    'StartResumableWrite',
    { write_object_spec: writeSpec(bucket, object, o), ...(o.checksums ? { object_checksums: o.checksums } : {}) },
    metadata,
  ).then((r) => r.upload_id);
}

export function gcsQueryWriteStatus(
  client: StorageClient,
  uploadId: string,
  metadata = bearer(),
): Promise<GcsQueryWriteStatusResponse__Output> {
  return unaryCall(client, 'QueryWriteStatus', { upload_id: uploadId }, metadata);
}

export function cancelResumableWrite(client: StorageClient, uploadId: string, metadata = bearer()): Promise<unknown> {
  return unaryCall(client, 'CancelResumableWrite', { upload_id: uploadId }, metadata);
}

export function getObject(
  client: StorageClient,
  bucket: string,
  object: string,
  extra: object = {},
  metadata = bearer(),
): Promise<GcsObject__Output> {
  return unaryCall(client, 'GetObject', { bucket: bucketResource(bucket), object, ...extra }, metadata);
}

export function deleteObject(
  client: StorageClient,
  bucket: string,
  object: string,
  extra: object = {},
  metadata = bearer(),
): Promise<unknown> {
  return unaryCall(client, 'DeleteObject', { bucket: bucketResource(bucket), object, ...extra }, metadata);
}

export interface GcsChunkOptions {
  /** First message: `upload_id` (resumable) or a spec (single stream). */
  first: { upload_id: string } | { write_object_spec: ReturnType<typeof writeSpec> };
  offset?: number;
  chunk?: number;
  finish?: boolean;
  /** Per-message crc32c (default on). */
  crc?: boolean;
  /** Whole-object checksums on the last message. */
  checksums?: { crc32c?: number; md5_hash?: Buffer };
}

/** WriteObjectRequests for `data` from `offset` in `chunk`-byte messages; the first names the upload. */
export function* gcsRequests(data: Buffer, o: GcsChunkOptions): Generator<GcsWriteObjectRequest & BidiWriteObjectRequest> {
  const chunk = o.chunk ?? 2 * 1024 * 1024;
  const finish = o.finish ?? true;
  let pos = o.offset ?? 0;
  let first = true;
  do {
    const end = Math.min(pos + chunk, data.length);
    const content = data.subarray(pos, end);
    const last = end === data.length;
    yield {
      ...(first ? o.first : {}),
      write_offset: pos,
      checksummed_data: o.crc === false ? { content } : { content, crc32c: crc32c(content) },
      ...(finish && last ? { finish_write: true, ...(o.checksums ? { object_checksums: o.checksums } : {}) } : {}),
    };
    first = false;
    pos = end;
  } while (pos < data.length);
}

/** Sends the requests over WriteObject (honouring backpressure), half-closes, returns the response. */
export function writeObject(
  client: StorageClient,
  requests: Iterable<GcsWriteObjectRequest> | AsyncIterable<GcsWriteObjectRequest>,
  metadata: grpc.Metadata = bearer(),
  options: grpc.CallOptions = {},
): Promise<GcsWriteObjectResponse__Output> {
  return new Promise((resolve, reject) => {
    const call = client.WriteObject(metadata, options, (err, res) => (err || !res ? reject(err) : resolve(res)));
    streamRequests(call, requests).catch(reject);
  });
}

/**
 * Drives BidiWriteObject: sends each request, and after one with `state_lookup` waits for its
 * answer before sending more (as the Go client does after each flush). Half-closes after the last
 * request and returns every response.
 */
export async function bidiWrite(
  client: StorageClient,
  requests: Iterable<BidiWriteObjectRequest>,
  metadata: grpc.Metadata = bearer(),
): Promise<BidiWriteObjectResponse__Output[]> {
  const call = client.BidiWriteObject(metadata);
  const responses: BidiWriteObjectResponse__Output[] = [];
  const waiters: (() => void)[] = [];
  let failure: Error | undefined;
  let ended = false;
  const ended$ = new Promise<void>((resolve) => {
    call.on('data', (r: BidiWriteObjectResponse__Output) => {
      responses.push(r);
      waiters.shift()?.();
    });
    call.on('error', (err) => {
      failure = err;
      waiters.splice(0).forEach((w) => w());
      resolve();
    });
    call.on('end', () => {
      ended = true;
      waiters.splice(0).forEach((w) => w());
      resolve();
    });
  });
  for (const req of requests) {
    if (failure || ended) break;
    const answered = req.state_lookup && !req.finish_write ? new Promise<void>((r) => waiters.push(r)) : undefined;
    if (!call.write(req)) await new Promise((r) => call.once('drain', r));
    await answered;
  }
  call.end();
  await ended$;
  if (failure) throw Object.assign(failure, { responses });
  return responses;
}

export async function readObject(
  client: StorageClient,
  bucket: string,
  object: string,
  extra: Partial<ReadObjectRequest> = {},
  metadata = bearer(),
): Promise<{ data: Buffer; responses: ReadObjectResponse__Output[] }> {
  const call = client.ReadObject({ bucket: bucketResource(bucket), object, ...extra }, metadata);
  const responses: ReadObjectResponse__Output[] = [];
  for await (const r of call) responses.push(r as ReadObjectResponse__Output);
  return { data: Buffer.concat(responses.map((r) => r.checksummed_data?.content ?? Buffer.alloc(0))), responses };
}
