import * as grpc from '@grpc/grpc-js';
import { classifyInfraError } from '@ferry/core';
import { toWireError } from '@ferry/errors';
import type { Logger } from '@ferry/logging';

/** Turns any error into a gRPC status with a precise code, logging the unexpected ones. */
export function toGrpcError(err: unknown, logger: Logger, method: string): Partial<grpc.StatusObject> {
  const wire = toWireError(classifyInfraError(err));
  if (!wire.expected) logger.error({ err, method }, 'unexpected error');
  else if (wire.code !== 'CANCELLED') logger.debug({ method, code: wire.code, message: wire.message }, 'request refused');
  return { code: wire.grpc as grpc.status, details: wire.message, metadata: new grpc.Metadata() };
}
