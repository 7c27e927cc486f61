import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import { Authenticator, Principal } from '@ferry/auth';
import { ByteStreamService, WriteMessage } from '@ferry/bytestream';
import { LOGGER } from '@ferry/core';
import { CancelledError } from '@ferry/errors';
import type { Logger } from '@ferry/logging';
import type {
  ByteStreamHandlers,
  QueryWriteStatusRequest,
  QueryWriteStatusResponse,
  ReadRequest,
  ReadResponse,
  WriteRequest__Output,
  WriteResponse,
} from '@ferry/protocol';
import { toGrpcError } from './grpc-status';

type AnyCall = { metadata: grpc.Metadata };

/**
 * grpc-js decodes one message each time its readable asks, and an object-mode readable asks until
 * 16 messages are buffered: 32 MiB per stream with 2 MiB messages. Two is enough to keep the disk
 * busy; the HTTP/2 window holds the rest back at the client. (Node reads the high-water mark from
 * the stream state on every read, so lowering it after construction takes effect.)
 */
function limitReadAhead(stream: NodeJS.ReadableStream): void {
  const state = (stream as unknown as { _readableState?: { highWaterMark: number } })._readableState;
  if (state) state.highWaterMark = 2;
}

/**
 * grpc-js handlers for google.bytestream.ByteStream: authentication, backpressure and cancellation
 * on the raw streams, errors mapped to status codes. Protocol rules live in ByteStreamService.
 */
@Injectable()
export class ByteStreamGrpc {
  constructor(
    private readonly service: ByteStreamService,
    private readonly auth: Authenticator,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  private principal(call: AnyCall): Principal {
    const header = call.metadata.get('authorization')[0];
    return this.auth.authenticateBearer(typeof header === 'string' ? header : header?.toString());
  }

  handlers(): ByteStreamHandlers {
    return {
      Write: (call, callback) => void this.write(call, callback),
      Read: (call) => void this.read(call),
      QueryWriteStatus: (call, callback) => void this.queryWriteStatus(call, callback),
    };
  }

  private async write(
    call: grpc.ServerReadableStream<WriteRequest__Output, WriteResponse>,
    callback: grpc.sendUnaryData<WriteResponse>,
  ): Promise<void> {
    // A cancelled call (client gone, deadline passed) must end the iteration instead of hanging it.
    const onCancel = () => call.destroy(new CancelledError('client cancelled the Write'));
    call.once('cancelled', onCancel);
    limitReadAhead(call);
    try {
      const principal = this.principal(call);
      const committed = await this.service.write(principal, call as AsyncIterable<WriteMessage>);
      callback(null, { committed_size: committed });
    } catch (err) {
      callback(toGrpcError(err, this.logger, 'Write'));
    } finally {
      call.off('cancelled', onCancel);
    }
  }

  private async read(call: grpc.ServerWritableStream<ReadRequest, ReadResponse>): Promise<void> {
    let cancelled = false;
    call.once('cancelled', () => (cancelled = true));
    try {
      const principal = this.principal(call);
      const { stream } = await this.service.read(principal, call.request);
      call.once('cancelled', () => stream.destroy());
      for await (const chunk of stream) {
        if (cancelled) break;
        if (!call.write({ data: chunk as Buffer })) await Promise.race([once(call, 'drain'), once(call, 'cancelled')]);
      }
      if (!cancelled) call.end();
    } catch (err) {
      // grpc-js turns an 'error' event on a server stream into the call's status.
      if (!cancelled) call.emit('error', toGrpcError(err, this.logger, 'Read'));
    }
  }

  private async queryWriteStatus(
    call: grpc.ServerUnaryCall<QueryWriteStatusRequest, QueryWriteStatusResponse>,
    callback: grpc.sendUnaryData<QueryWriteStatusResponse>,
  ): Promise<void> {
    try {
      callback(null, await this.service.queryWriteStatus(this.principal(call), call.request.resource_name));
    } catch (err) {
      callback(toGrpcError(err, this.logger, 'QueryWriteStatus'));
    }
  }
}
