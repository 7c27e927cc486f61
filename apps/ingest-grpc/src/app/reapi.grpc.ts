import * as grpc from '@grpc/grpc-js';
import { Inject, Injectable } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { LOGGER } from '@ferry/core';
import type { Logger } from '@ferry/logging';
import type { ActionCacheHandlers, CapabilitiesHandlers, ContentAddressableStorageHandlers, GetTreeResponse } from '@ferry/protocol';
import { ReapiService } from '@ferry/reapi';
import { principalOf, serveStream, serveUnary } from './grpc-calls';

/**
 * grpc-js handlers for the Remote Execution API cache services (Capabilities,
 * ContentAddressableStorage, ActionCache). Protocol rules live in ReapiService.
 */
@Injectable()
export class ReapiGrpc {
  constructor(
    private readonly service: ReapiService,
    private readonly auth: Authenticator,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  private principal(call: { metadata: grpc.Metadata }) {
    return principalOf(this.auth, call);
  }

  capabilities(): CapabilitiesHandlers {
    return {
      // Capabilities are public (Bazel 2.x sends no credentials here); a wrong token is still refused.
      GetCapabilities: (call, callback) =>
        void serveUnary(callback, this.logger, 'GetCapabilities', async () => {
          const anonymous = call.metadata.get('authorization').length === 0;
          return this.service.capabilities(anonymous ? undefined : this.principal(call), call.request.instance_name);
        }),
    };
  }

  cas(): ContentAddressableStorageHandlers {
    return {
      FindMissingBlobs: (call, callback) =>
        void serveUnary(callback, this.logger, 'FindMissingBlobs', () => this.service.findMissingBlobs(this.principal(call), call.request)),
      BatchUpdateBlobs: (call, callback) =>
        void serveUnary(callback, this.logger, 'BatchUpdateBlobs', () => this.service.batchUpdateBlobs(this.principal(call), call.request)),
      BatchReadBlobs: (call, callback) =>
        void serveUnary(callback, this.logger, 'BatchReadBlobs', () => this.service.batchReadBlobs(this.principal(call), call.request)),
      GetTree: (call) =>
        void serveStream<GetTreeResponse>(call, this.logger, 'GetTree', async () =>
          this.service.getTree(this.principal(call), call.request),
        ),
    };
  }

  actionCache(): ActionCacheHandlers {
    return {
      GetActionResult: (call, callback) =>
        void serveUnary(callback, this.logger, 'GetActionResult', () => this.service.getActionResult(this.principal(call), call.request)),
      UpdateActionResult: (call, callback) =>
        void serveUnary(callback, this.logger, 'UpdateActionResult', () =>
          this.service.updateActionResult(this.principal(call), call.request),
        ),
    };
  }
}
