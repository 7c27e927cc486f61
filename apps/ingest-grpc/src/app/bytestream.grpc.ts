import * as grpc from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { ByteStreamService, WriteMessage } from '@ferry/bytestream';
import { LOGGER } from '@ferry/core';
import type { Logger } from '@ferry/logging';
import type { ByteStreamHandlers, ReadResponse, WriteRequest__Output, WriteResponse } from '@ferry/protocol';
import { uploadMetrics } from '@ferry/uploads';
import { CallDrain } from './call-drain';
import { clientToolOf, principalOf, receiving, serveStream, serveUnary } from './grpc-calls';

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
    private readonly drain: CallDrain,
  ) {}

  handlers(): ByteStreamHandlers {
    return {
      Write: (call, callback) => void this.write(call, callback),
      Read: (call) =>
        void serveStream<ReadResponse>(call, this.logger, 'Read', async () => {
          const { stream } = await this.service.read(principalOf(this.auth, call), call.request);
          return (async function* () {
            const sent = uploadMetrics.bytesSent.labels({ protocol: 'bytestream' });
            for await (const chunk of stream) {
              sent.inc((chunk as Buffer).length);
              yield { data: chunk as Buffer };
            }
          })();
        }),
      QueryWriteStatus: (call, callback) =>
        void serveUnary(callback, this.logger, 'QueryWriteStatus', () =>
          this.service.queryWriteStatus(principalOf(this.auth, call), call.request.resource_name, clientToolOf(call)),
        ),
    };
  }

  private async write(
    call: grpc.ServerReadableStream<WriteRequest__Output, WriteResponse>,
    callback: grpc.sendUnaryData<WriteResponse>,
  ): Promise<void> {
    const { requests, done } = receiving(call, 'Write', this.drain.signal, this.drain.streamIdleMs);
    await serveUnary(callback, this.logger, 'Write', async () => ({
      committed_size: await this.service.write(principalOf(this.auth, call), requests as AsyncIterable<WriteMessage>),
    }));
    done();
  }
}
