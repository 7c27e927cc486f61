import type { FerryErrorCode } from '@ferry/errors';
import type { ErrorRenderer } from '@ferry/http';
import { InputError, InvalidRequestArgumentsError, NoMatchingMethodError } from '@ferry/objects';
import { InputTooLargeError } from './body';

/** Taskcluster's error codes for Ferry's domain errors (the object API speaks Taskcluster). */
const TC_CODES: Record<FerryErrorCode, [code: string, status: number]> = {
  INVALID_ARGUMENT: ['InputValidationError', 400],
  OUT_OF_RANGE: ['RangeNotSatisfiable', 416],
  NOT_FOUND: ['ResourceNotFound', 404],
  ALREADY_EXISTS: ['RequestConflict', 409],
  FAILED_PRECONDITION: ['RequestConflict', 409],
  ABORTED: ['RequestConflict', 409],
  UNAUTHENTICATED: ['AuthenticationFailed', 401],
  PERMISSION_DENIED: ['InsufficientScopes', 403],
  RESOURCE_EXHAUSTED: ['ServiceUnavailable', 503],
  CANCELLED: ['ClientClosedRequest', 499],
  DEADLINE_EXCEEDED: ['GatewayTimeout', 504],
  UNAVAILABLE: ['ServiceUnavailable', 503],
  UNIMPLEMENTED: ['NotImplemented', 501],
  INTERNAL: ['InternalServerError', 500],
};

/** Errors of the object service that have a Taskcluster code of their own (else: by FerryErrorCode). */
const TC_CLASSES: [errorClass: abstract new (...args: never[]) => Error, code: string, status: number][] = [
  [NoMatchingMethodError, 'NoMatchingMethod', 406],
  [InvalidRequestArgumentsError, 'InvalidRequestArguments', 400],
  [InputError, 'InputError', 400],
  [InputTooLargeError, 'InputTooLarge', 413],
];

/** `{code, message}` in Taskcluster's vocabulary, for every route of object-api. */
export const taskclusterErrorBody: ErrorRenderer = (e) => {
  const own = TC_CLASSES.find(([errorClass]) => e.error instanceof errorClass);
  if (own) return { status: own[2], body: { code: own[1], message: e.message } };
  const [code, status] = TC_CODES[e.code];
  return { status, body: { code, message: e.message } };
};
