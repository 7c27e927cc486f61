import { FerryError, FerryErrorCode } from './errors';

/**
 * The one table that maps domain error codes to wire statuses.
 * gRPC numbers are those of google.rpc.Code (and @grpc/grpc-js `status`).
 */
export const STATUS_TABLE: Readonly<Record<FerryErrorCode, { grpc: number; http: number }>> = {
  CANCELLED: { grpc: 1, http: 499 },
  INVALID_ARGUMENT: { grpc: 3, http: 400 },
  DEADLINE_EXCEEDED: { grpc: 4, http: 504 },
  NOT_FOUND: { grpc: 5, http: 404 },
  ALREADY_EXISTS: { grpc: 6, http: 409 },
  PERMISSION_DENIED: { grpc: 7, http: 403 },
  RESOURCE_EXHAUSTED: { grpc: 8, http: 429 },
  FAILED_PRECONDITION: { grpc: 9, http: 409 },
  ABORTED: { grpc: 10, http: 409 },
  OUT_OF_RANGE: { grpc: 11, http: 416 },
  UNIMPLEMENTED: { grpc: 12, http: 501 },
  INTERNAL: { grpc: 13, http: 500 },
  UNAVAILABLE: { grpc: 14, http: 503 },
  UNAUTHENTICATED: { grpc: 16, http: 401 },
};

export interface WireError {
  code: FerryErrorCode;
  message: string;
  grpc: number;
  http: number;
  /** false when the error is not a FerryError: an unexpected fault to log with its stack. */
  expected: boolean;
}

/** Classifies any thrown value. Unknown errors become INTERNAL without leaking their text. */
export function toWireError(err: unknown): WireError {
  if (err instanceof FerryError) {
    return { code: err.code, message: err.message, ...STATUS_TABLE[err.code], expected: true };
  }
  return { code: 'INTERNAL', message: 'internal error', ...STATUS_TABLE.INTERNAL, expected: false };
}
