import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { FerryErrorCode, toWireError } from '@ferry/errors';
import { NoMatchingMethodError } from '@ferry/objects';

/** Taskcluster's error codes for Ferry's domain errors (the object API speaks Taskcluster). */
const TC_CODES: Record<FerryErrorCode, { code: string; status: number }> = {
  INVALID_ARGUMENT: { code: 'InputValidationError', status: 400 },
  OUT_OF_RANGE: { code: 'RangeNotSatisfiable', status: 416 },
  NOT_FOUND: { code: 'ResourceNotFound', status: 404 },
  ALREADY_EXISTS: { code: 'RequestConflict', status: 409 },
  FAILED_PRECONDITION: { code: 'RequestConflict', status: 409 },
  ABORTED: { code: 'RequestConflict', status: 409 },
  UNAUTHENTICATED: { code: 'AuthenticationFailed', status: 401 },
  PERMISSION_DENIED: { code: 'InsufficientScopes', status: 403 },
  RESOURCE_EXHAUSTED: { code: 'ServiceUnavailable', status: 503 },
  CANCELLED: { code: 'ClientClosedRequest', status: 499 },
  DEADLINE_EXCEEDED: { code: 'GatewayTimeout', status: 504 },
  UNAVAILABLE: { code: 'ServiceUnavailable', status: 503 },
  INTERNAL: { code: 'InternalServerError', status: 500 },
};

/** `{code, message}` in Taskcluster's vocabulary, for every route of object-api. */
@Catch()
export class TaskclusterErrorFilter implements ExceptionFilter {
  constructor(
    private readonly onUnexpected: (err: unknown) => void,
    private readonly classify: (err: unknown) => unknown,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    let status: number;
    let body: { code: string; message: string };
    if (exception instanceof HttpException) {
      status = exception.getStatus();
      body = { code: status === 404 ? 'ResourceNotFound' : 'InputValidationError', message: status === 404 ? 'no such route' : exception.message };
    } else if (exception instanceof NoMatchingMethodError) {
      status = 406;
      body = { code: 'NoMatchingMethod', message: exception.message };
    } else {
      const wire = toWireError(this.classify(exception));
      if (!wire.expected) this.onUnexpected(exception);
      ({ status } = TC_CODES[wire.code]);
      body = { code: TC_CODES[wire.code].code, message: wire.message };
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(status).json(body);
  }
}
