import type { INestApplication } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { InvalidArgumentError } from '@ferry/errors';

/**
 * Which browser origins may call an app from their pages (FERRY_CORS_ORIGINS): exact serialized
 * origins (`https://app.example.com`: lowercase, default port omitted, as browsers send `Origin`),
 * or `*` for any origin.
 */
export interface CorsOptions {
  origins: '*' | readonly string[];
}

/** Methods a preflight grants: every method some Ferry route answers (tus's PATCH, part PUTs, ...). */
export const CORS_ALLOWED_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * Request headers a preflight grants (the same list whatever was asked: a browser then names the one
 * header refused). Authorization (Bearer, Hawk), the content headers of PUTs, Range of downloads, and
 * what tus-js-client 4 and Uppy send (`X-Request-ID` with addRequestId, `Upload-Complete` and
 * `Upload-Draft-Interop-Version` with the IETF draft protocol). Content-Length is not listed: browsers
 * set it themselves and never ask.
 */
export const CORS_ALLOWED_HEADERS: readonly string[] = [
  'Authorization',
  'Content-Type',
  'Content-MD5',
  'Content-Disposition',
  'Range',
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Offset',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Upload-Checksum',
  'Upload-Complete',
  'Upload-Draft-Interop-Version',
  'X-HTTP-Method-Override',
  'X-Requested-With',
  'X-Request-ID',
];

/**
 * Response headers browser code may read besides the safelisted ones: tus's (a client reads
 * `Location` after creation and `Upload-Offset` to resume), `ETag` of a part PUT (S3-style clients
 * collect them for `complete`), and the download and retry headers.
 */
export const CORS_EXPOSED_HEADERS: readonly string[] = [
  'Location',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Expires',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Upload-Concat',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
  'Tus-Checksum-Algorithm',
  'ETag',
  'Content-Range',
  'Content-Length',
  'Content-MD5',
  'Content-Disposition',
  'Accept-Ranges',
  'Retry-After',
];

/** How long a browser may cache a preflight answer (it caps this itself: Chrome at 2 h, Firefox at 24 h). */
export const CORS_MAX_AGE_SECONDS = 86_400;

type Middleware = (req: Request, res: Response, next: NextFunction) => void;

/**
 * CORS for every route of an app, to be the first middleware (before body parsing, so that every
 * answer, errors included, carries the grant):
 *
 * - An allowed `Origin` (or any, with `*`) gets `Access-Control-Allow-Origin` (the origin itself, or
 *   `*`) and `Access-Control-Expose-Headers` on every response, set before the route runs: a 4xx/5xx
 *   `{code, message}` is readable by browser code too. No `Access-Control-Allow-Credentials`: Ferry's
 *   clients authenticate with the Authorization header or a signed URL, never cookies (tus-js-client
 *   and Uppy leave `withCredentials` off), and `*` could not be used with credentials.
 * - A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) is answered here, on
 *   any path, before routing: 204 with Allow-Origin, Allow-Methods, Allow-Headers and Max-Age when
 *   the origin is allowed; 403 with no Access-Control-* header when it is not (the browser then
 *   refuses the request; the status says why in its network log). A plain OPTIONS (no
 *   `Access-Control-Request-Method`, e.g. tus capability discovery) goes on to its route.
 * - With a list of origins every response carries `Vary: Origin` (a cache must not hand one
 *   origin's grant to another). With `*` the grant does not depend on the Origin, so it is sent on
 *   every response, with or without one, and nothing varies.
 * - A request from another origin is never refused here: CORS only decides what browser pages may
 *   read; authorization stays with the routes (a same-origin page sends `Origin` too).
 */
export function corsMiddleware(options: CorsOptions): Middleware {
  const any = options.origins === '*';
  const allowed = new Set<string>(options.origins === '*' ? [] : options.origins);
  const exposed = CORS_EXPOSED_HEADERS.join(', ');
  const methods = CORS_ALLOWED_METHODS.join(', ');
  const headers = CORS_ALLOWED_HEADERS.join(', ');
  return (req, res, next) => {
    const origin = req.headers.origin;
    const granted = any ? '*' : origin !== undefined && allowed.has(origin) ? origin : undefined;
    if (!any) res.vary('Origin');
    if (req.method === 'OPTIONS' && origin !== undefined && req.headers['access-control-request-method'] !== undefined) {
      if (granted === undefined) {
        res.status(403).end();
        return;
      }
      res.status(204).set({
        'Access-Control-Allow-Origin': granted,
        'Access-Control-Allow-Methods': methods,
        'Access-Control-Allow-Headers': headers,
        'Access-Control-Max-Age': String(CORS_MAX_AGE_SECONDS),
      });
      res.end();
      return;
    }
    if (granted !== undefined) res.set({ 'Access-Control-Allow-Origin': granted, 'Access-Control-Expose-Headers': exposed });
    next();
  };
}

/**
 * Installs corsMiddleware on an app when CORS is configured (`undefined`: off, nothing installed,
 * no Access-Control-* header anywhere). Call it before any other middleware.
 */
export function useCors(app: INestApplication, options: CorsOptions | undefined): void {
  if (options) app.use(corsMiddleware(options));
}

/** Methods `X-HTTP-Method-Override` may name. */
const OVERRIDABLE = new Set(['PATCH', 'DELETE']);

/**
 * tus's `X-HTTP-Method-Override` (for clients that cannot send PATCH or DELETE, e.g. tus-js-client
 * with `overridePatchMethod`): a POST on `paths` carrying it is routed as the method it names.
 * Only PATCH and DELETE may be named; another value is INVALID_ARGUMENT (400). Install it before
 * the routes (the router matches on `req.method`).
 */
export function methodOverrideMiddleware(paths: RegExp): Middleware {
  return (req, _res, next) => {
    const override = req.header('x-http-method-override');
    if (override === undefined || req.method !== 'POST' || !paths.test(req.path)) return next();
    const method = override.trim().toUpperCase();
    if (!OVERRIDABLE.has(method)) return next(new InvalidArgumentError(`X-HTTP-Method-Override must be PATCH or DELETE, not ${override}`));
    req.method = method;
    next();
  };
}
