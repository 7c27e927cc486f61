/**
 * Domain errors. Every failure a client can cause or observe is one of these classes;
 * the edge adapters (gRPC, HTTP) turn them into status codes through `status-table.ts`.
 */
export type FerryErrorCode =
  | 'INVALID_ARGUMENT'
  | 'OUT_OF_RANGE'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'CANCELLED'
  | 'DEADLINE_EXCEEDED'
  | 'UNAVAILABLE'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

export abstract class FerryError extends Error {
  abstract readonly code: FerryErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is malformed (bad name, wrong offset, digest mismatch...). */
export class InvalidArgumentError extends FerryError {
  readonly code = 'INVALID_ARGUMENT';
}

/** An offset or range lies outside the resource. */
export class OutOfRangeError extends FerryError {
  readonly code = 'OUT_OF_RANGE';
}

export class NotFoundError extends FerryError {
  readonly code = 'NOT_FOUND';
}

/** A published object exists under this name with different content. */
export class AlreadyExistsError extends FerryError {
  readonly code = 'ALREADY_EXISTS';
}

/** The resource is not in a state that allows the request (e.g. an upload that is already completing). */
export class FailedPreconditionError extends FerryError {
  readonly code = 'FAILED_PRECONDITION';
}

/** Another writer holds the upload, or this writer lost its lease. Retryable. */
export class ConcurrentWriterError extends FerryError {
  readonly code = 'ABORTED';
}

export class UnauthenticatedError extends FerryError {
  readonly code = 'UNAUTHENTICATED';
}

export class PermissionDeniedError extends FerryError {
  readonly code = 'PERMISSION_DENIED';
}

export class ResourceExhaustedError extends FerryError {
  readonly code = 'RESOURCE_EXHAUSTED';
}

/** The client went away (cancelled the call or closed the connection). */
export class CancelledError extends FerryError {
  readonly code = 'CANCELLED';
}

/** The client let a call wait past a limit (a stream that sent nothing for too long). */
export class DeadlineExceededError extends FerryError {
  readonly code = 'DEADLINE_EXCEEDED';
}

/** A dependency (Redis, storage) cannot be reached right now. Retryable. */
export class UnavailableError extends FerryError {
  readonly code = 'UNAVAILABLE';
}

/** A valid request for a feature Ferry does not offer (appendable objects, customer-supplied keys...). */
export class UnimplementedError extends FerryError {
  readonly code = 'UNIMPLEMENTED';
}

/** A broken invariant inside Ferry; never the client's fault. */
export class InternalError extends FerryError {
  readonly code = 'INTERNAL';
}
