import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';

export interface GrpcOutcome {
  code: grpc.status;
  details: string;
  /** Messages the server sent before its status. */
  messages: number;
}

const identity = (b: Buffer) => b;

export type CallKind = 'unary' | 'clientStream' | 'serverStream' | 'bidi';

export function kindOf(def: { requestStream: boolean; responseStream: boolean }): CallKind {
  if (def.requestStream) return def.responseStream ? 'bidi' : 'clientStream';
  return def.responseStream ? 'serverStream' : 'unary';
}

/**
 * Sends `messages` (already serialized: any bytes) to `path` with grpc-js and resolves with the
 * status the server answers. A deadline past `timeoutMs` is reported as DEADLINE_EXCEEDED (a hang).
 */
export function rawCall(
  client: grpc.Client,
  path: string,
  kind: CallKind,
  messages: Buffer[],
  metadata: grpc.Metadata,
  timeoutMs: number,
): Promise<GrpcOutcome> {
  const options: grpc.CallOptions = { deadline: Date.now() + timeoutMs };
  return new Promise((resolve) => {
    let received = 0;
    const done = (err: grpc.ServiceError | null) =>
      resolve(
        err ? { code: err.code, details: err.details, messages: received } : { code: grpc.status.OK, details: '', messages: received },
      );
    if (kind === 'unary') {
      client.makeUnaryRequest(path, identity, identity, messages[0] ?? Buffer.alloc(0), metadata, options, (err) => {
        if (!err) received++;
        done(err);
      });
      return;
    }
    if (kind === 'clientStream') {
      const call = client.makeClientStreamRequest(path, identity, identity, metadata, options, (err) => {
        if (!err) received++;
        done(err);
      });
      call.on('error', () => undefined);
      for (const m of messages) call.write(m);
      call.end();
      return;
    }
    const call =
      kind === 'serverStream'
        ? client.makeServerStreamRequest(path, identity, identity, messages[0] ?? Buffer.alloc(0), metadata, options)
        : client.makeBidiStreamRequest(path, identity, identity, metadata, options);
    call.on('data', () => received++);
    let settled = false;
    call.on('error', (err: grpc.ServiceError) => {
      settled = true;
      done(err);
    });
    call.on('status', (s: grpc.StatusObject) => {
      if (!settled && s.code === grpc.status.OK) done(null);
    });
    if (kind === 'bidi') {
      const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
      for (const m of messages) duplex.write(m);
      duplex.end();
    }
  });
}

/** One gRPC frame: compressed flag, a declared length (by default the payload's), the payload. */
export function frame(payload: Buffer, declared = payload.length, compressed = 0): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(compressed, 0);
  head.writeUInt32BE(declared >>> 0, 1);
  return Buffer.concat([head, payload]);
}

export interface H2Outcome {
  httpStatus: number;
  grpcStatus?: number;
  grpcMessage?: string;
  /** No answer within the timeout. */
  hang?: boolean;
  /** The stream was reset or the session failed before a status. */
  reset?: string;
}

/**
 * An HTTP/2 request to a gRPC server with any headers and body bytes (frames of any shape), over
 * the given session: truncated frames, oversized declared lengths, stray compressed flags.
 */
export function h2Call(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer[],
  timeoutMs: number,
): Promise<H2Outcome> {
  return new Promise((resolve) => {
    const out: H2Outcome = { httpStatus: 0 };
    let done = false;
    const finish = (extra: Partial<H2Outcome> = {}) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      resolve({ ...out, ...extra });
    };
    const stream = session.request(headers, { endStream: false });
    const timer = setTimeout(() => finish({ hang: true }), timeoutMs);
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h[':status'] !== undefined) out.httpStatus = Number(h[':status']);
      if (h['grpc-status'] !== undefined) out.grpcStatus = Number(h['grpc-status']);
      if (h['grpc-message'] !== undefined) out.grpcMessage = decodeURIComponent(String(h['grpc-message']));
    };
    stream.on('response', (h) => {
      take(h);
      if (out.grpcStatus !== undefined) finish();
    });
    stream.on('trailers', (h) => {
      take(h);
      finish();
    });
    stream.on('data', () => undefined);
    stream.on('end', () => finish(out.grpcStatus === undefined ? { reset: 'ended without a status' } : {}));
    stream.on('close', () => finish(out.grpcStatus === undefined ? { reset: `closed with rst code ${stream.rstCode}` } : {}));
    stream.on('error', (err) => finish({ reset: err.message }));
    for (const b of body) stream.write(b);
    stream.end();
  });
}
