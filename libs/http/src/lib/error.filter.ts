import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { FerryErrorCode, STATUS_TABLE, toWireError } from '@ferry/errors';

/** The JSON body of every error Ferry's HTTP apps send. `reason` repeats `message` for Synapse clients. */
export interface ErrorBody {
  code: FerryErrorCode;
  message: string;
  reason: string;
}

const CODE_OF_STATUS: Record<number, FerryErrorCode> = Object.fromEntries(
  Object.entries(STATUS_TABLE).map(([code, s]) => [s.http, code as FerryErrorCode]),
);

/** Turns any thrown value into `{code, message, reason}` with the status of the one status table. */
export function toErrorResponse(err: unknown, classify: (err: unknown) => unknown = (e) => e): { status: number; body: ErrorBody; expected: boolean } {
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = CODE_OF_STATUS[status] ?? (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT');
    const message = status === 404 ? 'no such route' : err.message;
    return { status, body: { code, message, reason: message }, expected: true };
  }
  const wire = toWireError(classify(err));
  return { status: wire.http, body: { code: wire.code, message: wire.message, reason: wire.message }, expected: wire.expected };
}

/** Nest exception filter for every route of an HTTP app. */
@Catch()
export class FerryErrorFilter implements ExceptionFilter {
  constructor(
    private readonly onUnexpected: (err: unknown) => void = () => undefined,
    private readonly classify: (err: unknown) => unknown = (e) => e,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const { status, body, expected } = toErrorResponse(exception, this.classify);
    if (!expected) this.onUnexpected(exception);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(status).json(body);
  }
}
