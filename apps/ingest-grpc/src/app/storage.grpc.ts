import * as grpc from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { LOGGER } from '@ferry/core';
import { GcsService, GcsWriteMessage } from '@ferry/gcs';
import type { Logger } from '@ferry/logging';
import type {
  BidiWriteObjectRequest__Output,
  BidiWriteObjectResponse,
  GcsWriteObjectRequest__Output,
  GcsWriteObjectResponse,
  ReadObjectResponse,
  StorageHandlers,
} from '@ferry/protocol';
import { CallDrain } from './call-drain';
import { failStream, principalOf, receiving, send, serveStream, serveUnary } from './grpc-calls';

/**
 * grpc-js handlers for the google.storage.v2.Storage methods Ferry serves (resumable writes,
 * reads, GetObject, DeleteObject); grpc-js answers the others UNIMPLEMENTED. Protocol rules live
 * in GcsService.
 */
@Injectable()
export class StorageGrpc {
  constructor(
    private readonly service: GcsService,
    private readonly auth: Authenticator,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly drain: CallDrain,
  ) {}

  handlers(): Partial<StorageHandlers> {
    const principal = (call: { metadata: grpc.Metadata }) => principalOf(this.auth, call);
    return {
      StartResumableWrite: (call, callback) =>
        void serveUnary(callback, this.logger, 'StartResumableWrite', () =>
          this.service.startResumableWrite(principal(call), call.request),
        ),
      WriteObject: (call, callback) => void this.writeObject(call, callback),
      BidiWriteObject: (call) => void this.bidiWriteObject(call),
      QueryWriteStatus: (call, callback) =>
        void serveUnary(callback, this.logger, 'QueryWriteStatus', () =>
          this.service.queryWriteStatus(principal(call), call.request.upload_id),
        ),
      CancelResumableWrite: (call, callback) =>
        void serveUnary(callback, this.logger, 'CancelResumableWrite', async () => {
          await this.service.cancelResumableWrite(principal(call), call.request.upload_id);
          return {};
        }),
      ReadObject: (call) =>
        void serveStream<ReadObjectResponse>(
          call,
          this.logger,
          'ReadObject',
          async () => (await this.service.readObject(principal(call), call.request)).responses,
        ),
      GetObject: (call, callback) =>
        void serveUnary(callback, this.logger, 'GetObject', () => this.service.getObject(principal(call), call.request)),
      DeleteObject: (call, callback) =>
        void serveUnary(callback, this.logger, 'DeleteObject', async () => {
          await this.service.deleteObject(principal(call), call.request);
          return {};
        }),
    };
  }

  private async writeObject(
    call: grpc.ServerReadableStream<GcsWriteObjectRequest__Output, GcsWriteObjectResponse>,
    callback: grpc.sendUnaryData<GcsWriteObjectResponse>,
  ): Promise<void> {
    const { requests, done } = receiving(call, 'WriteObject', this.drain.signal, this.drain.streamIdleMs);
    await serveUnary(callback, this.logger, 'WriteObject', () =>
      this.service.write(principalOf(this.auth, call), requests as AsyncIterable<GcsWriteMessage>),
    );
    done();
  }

  /** Replies as the service produces them: state lookups, the persisted size at the end, or the object. */
  private async bidiWriteObject(call: grpc.ServerDuplexStream<BidiWriteObjectRequest__Output, BidiWriteObjectResponse>): Promise<void> {
    const { requests, done } = receiving(call, 'BidiWriteObject', this.drain.signal, this.drain.streamIdleMs);
    try {
      await this.service.write(principalOf(this.auth, call), requests as AsyncIterable<GcsWriteMessage>, {
        persisted: async (size) => void (await send(call, { persisted_size: size })),
        finished: async (resource) => void (await send(call, { resource })),
      });
      if (!call.cancelled) call.end();
    } catch (err) {
      failStream(call, err, this.logger, 'BidiWriteObject');
    } finally {
      done();
    }
  }
}
