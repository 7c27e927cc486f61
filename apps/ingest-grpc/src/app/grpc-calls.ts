import * as grpc from '@grpc/grpc-js';
import type { Authenticator, Principal } from '@ferry/auth';
import type { ClientTool } from '@ferry/bytestream';
import { CancelledError, DeadlineExceededError, UnavailableError } from '@ferry/errors';
import type { Logger } from '@ferry/logging';
import { type MessageCodec, type RequestMetadata, type RequestMetadata__Output, messageCodec } from '@ferry/protocol';
import { interruptible } from '@ferry/uploads';
import { toGrpcError } from './grpc-status';

/** The caller of a gRPC call, from its `authorization` metadata (bearer token). */
export function principalOf(auth: Authenticator, call: { metadata: grpc.Metadata }): Principal {
  const header = call.metadata.get('authorization')[0];
  return auth.authenticateBearer(typeof header === 'string' ? header : header?.toString());
}

/** The metadata entry in which REAPI clients (Bazel among them) send a serialized RequestMetadata. */
export const REQUEST_METADATA_KEY = 'build.bazel.remote.execution.v2.requestmetadata-bin';

let requestMetadata: MessageCodec<RequestMetadata, RequestMetadata__Output> | undefined;

/**
 * The tool behind a call, from its REAPI `RequestMetadata.tool_details` (Bazel sends it on every
 * call, ByteStream included). Undefined when absent or malformed: it is a hint, never a reason to
 * fail a call.
 */
export function clientToolOf(call: { metadata: grpc.Metadata }): ClientTool | undefined {
  const raw = call.metadata.get(REQUEST_METADATA_KEY)[0];
  if (!Buffer.isBuffer(raw) || raw.length === 0) return undefined;
  try {
    requestMetadata ??= messageCodec<RequestMetadata, RequestMetadata__Output>('build.bazel.remote.execution.v2.RequestMetadata');
    const details = requestMetadata.decode(raw).tool_details;
    if (!details || (!details.tool_name && !details.tool_version)) return undefined;
    return { tool: details.tool_name, version: details.tool_version };
  } catch {
    return undefined;
  }
}

/**
 * The messages of a client-streaming or bidi call, for `for await`: at most two decoded messages
 * read ahead (grpc-js decodes one message each time its readable asks, and an object-mode readable
 * asks until 16 are buffered: 32 MiB per stream with 2 MiB messages; two keep the disk busy and the
 * HTTP/2 window holds the rest back at the client). The iteration fails with CANCELLED when the
 * client cancels (instead of hanging), with UNAVAILABLE when the server drains for shutdown, and
 * with DEADLINE_EXCEEDED when the client sends nothing for `idleMs` while the handler waits for a
 * message (a stalled client would otherwise hold its upload's lease for good); it never destroys
 * the call, whose status the handler still sends. Call `done()` at the end.
 */
export function receiving<T>(
  call: grpc.ServerReadableStream<T, unknown> | grpc.ServerDuplexStream<T, unknown>,
  method: string,
  drain: AbortSignal,
  idleMs: number,
): { requests: AsyncIterable<T>; done(): void } {
  // Node reads the high-water mark from the stream state on every read: lowering it now takes effect.
  const state = (call as unknown as { _readableState?: { highWaterMark: number } })._readableState;
  if (state) state.highWaterMark = 2;
  const interrupt = new AbortController();
  const onCancel = () => interrupt.abort(new CancelledError(`client cancelled the ${method}`));
  const onDrain = () => interrupt.abort(new UnavailableError(`the server is shutting down; query the write status and resume (${method})`));
  call.once('cancelled', onCancel);
  if (drain.aborted) onDrain();
  else drain.addEventListener('abort', onDrain, { once: true });
  // A readable's default iterator destroys the stream when the iteration ends: on a duplex call
  // that would also kill the response side before its status is sent.
  const source = call.iterator({ destroyOnReturn: false })[Symbol.asyncIterator]() as AsyncIterator<T>;
  let idle: NodeJS.Timeout | undefined;
  const watched: AsyncIterator<T> = {
    next: () => {
      idle = setTimeout(
        () => interrupt.abort(new DeadlineExceededError(`the ${method} sent nothing for ${idleMs} ms: query the write status and resume`)),
        idleMs,
      );
      return source.next().finally(() => clearTimeout(idle));
    },
  };
  const requests = interruptible(watched, interrupt.signal);
  return {
    requests,
    done: () => {
      clearTimeout(idle);
      call.off('cancelled', onCancel);
      drain.removeEventListener('abort', onDrain);
    },
  };
}

/** Writes one message, waiting while the call's buffer is full; false once the call is cancelled. */
export async function send<T>(
  call: grpc.ServerWritableStream<unknown, T> | grpc.ServerDuplexStream<unknown, T>,
  message: T,
): Promise<boolean> {
  if (call.cancelled) return false;
  if (!call.write(message)) await drainedOrCancelled(call);
  return !call.cancelled;
}

/** Resolves on 'drain' or 'cancelled', leaving no listener behind (a long stream waits thousands of times). */
function drainedOrCancelled(call: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
  });
}

/**
 * Serves a server-streaming call: sends what `open` produces with backpressure and ends the call,
 * or ends it with the error's status. A cancelled call stops the producer (its iterator is returned).
 */
export async function serveStream<T>(
  call: grpc.ServerWritableStream<unknown, T>,
  logger: Logger,
  method: string,
  open: () => Promise<AsyncIterable<T>>,
): Promise<void> {
  try {
    for await (const message of await open()) {
      if (!(await send(call, message))) return;
    }
    if (!call.cancelled) call.end();
  } catch (err) {
    failStream(call, err, logger, method);
  }
}

/** Ends a server-streaming or bidi call with the error's status (unless the client is gone). */
export function failStream(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  err: unknown,
  logger: Logger,
  method: string,
): void {
  // grpc-js turns an 'error' event on a server stream into the call's status.
  if (!call.cancelled) call.emit('error', toGrpcError(err, logger, method));
}

/** Serves a unary call: the callback gets the result or the error's status. */
export async function serveUnary<T>(callback: grpc.sendUnaryData<T>, logger: Logger, method: string, run: () => Promise<T>): Promise<void> {
  try {
    callback(null, await run());
  } catch (err) {
    callback(toGrpcError(err, logger, method));
  }
}
