import { setMaxListeners } from 'node:events';
import { Inject, Injectable } from '@nestjs/common';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG } from '@ferry/core';

/**
 * Tells the upload streams in flight that the server is shutting down. On SIGTERM the gRPC server
 * stops taking calls and fires this: each Write/WriteObject/BidiWriteObject stream stops reading,
 * its writer commits every byte it received, and the call ends with UNAVAILABLE so that the
 * client queries the status and resumes (on another replica, or on this one restarted).
 */
@Injectable()
export class CallDrain {
  private readonly controller = new AbortController();
  /** How long an upload stream may send nothing before it is ended (FERRY_GRPC_STREAM_IDLE_MS). */
  readonly streamIdleMs: number;

  constructor(@Inject(FERRY_CONFIG) config: FerryConfig) {
    this.streamIdleMs = config.grpc.streamIdleMs;
    // every upload stream in flight listens (and stops listening when it ends): more than Node's
    // default of 10 at once is the normal case, not a leak to warn about
    setMaxListeners(0, this.controller.signal);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  drain(): void {
    this.controller.abort();
  }
}
