import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { FerryErrorCode, STATUS_TABLE, toWireError } from '@ferry/errors';

/** A failure as an HTTP edge sees it: domain code, HTTP status by the one status table, message. */
export interface EdgeError {
  code: FerryErrorCode;
  status: number;
  message: string;
  /** What was thrown. */
  error: unknown;
  /** false for an unexpected fault (to be logged with its stack). */
  expected: boolean;
}

/** Turns an EdgeError into the status and JSON body an app's protocol uses. */
export type ErrorRenderer = (e: EdgeError) => { status: number; body: object };

/** Ferry's own error body: `{code, message, reason}` (`reason` repeats `message` for Synapse clients). */
export const ferryErrorBody: ErrorRenderer = (e) => ({ status: e.status, body: { code: e.code, message: e.message, reason: e.message } });

const CODE_OF_STATUS: Record<number, FerryErrorCode> = Object.fromEntries(
  Object.entries(STATUS_TABLE).map(([code, s]) => [s.http, code as FerryErrorCode]),
);

/** Classifies any thrown value (Nest's own HTTP exceptions included, e.g. an unknown route). */
export function toEdgeError(err: unknown, classify: (err: unknown) => unknown = (e) => e): EdgeError {
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = CODE_OF_STATUS[status] ?? (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT');
    return { code, status, message: status === 404 ? 'no such route' : err.message, error: err, expected: true };
  }
  const wire = toWireError(classify(err));
  return { code: wire.code, status: wire.http, message: wire.message, error: err, expected: wire.expected };
}

/** Nest exception filter for every route of an HTTP app; `render` gives the protocol's error shape. */
@Catch()
export class FerryErrorFilter implements ExceptionFilter {
  constructor(
    private readonly onUnexpected: (err: unknown) => void = () => undefined,
    private readonly classify: (err: unknown) => unknown = (e) => e,
    private readonly render: ErrorRenderer = ferryErrorBody,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const edge = toEdgeError(exception, this.classify);
    if (!edge.expected) this.onUnexpected(exception);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { status, body } = this.render(edge);
    res.status(status).json(body);
  }
}
