import type { INestApplication } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { json } from 'express';
import type { Server } from 'node:http';
import type { SignedRequest } from '@ferry/auth';
import { InvalidArgumentError } from '@ferry/errors';
import { answerClientErrors } from './client-errors';

export interface HttpAppOptions {
  /** Paths whose bodies are streamed by the handler (never parsed as JSON), e.g. presigned PUTs. */
  streamedPaths: RegExp;
  /** Largest JSON body accepted on the other routes. */
  jsonLimit?: string;
  /** A JSON body that stops arriving for this long is cut (default 60 s, as the streamed routes cut theirs). */
  bodyIdleMs?: number;
}

/**
 * The JSON body parser of the routes that take JSON (not `streamedPaths`). A client that sends part
 * of a body and stalls is cut after `bodyIdleMs` without a byte: there is no whole-request
 * timeout, and without this the connection stayed open for good (found by `npm run fuzz`). The
 * idle cut ends with the body: the handler after it may take its time.
 */
export function jsonBodies(options: HttpAppOptions): (req: Request, res: Response, next: NextFunction) => void {
  const parse = json({ limit: options.jsonLimit ?? '1mb' });
  return (req, res, next) => {
    if (options.streamedPaths.test(req.path)) return next();
    const bodyRead = cutIdleBody(req, options.bodyIdleMs);
    parse(req, res, (err?: unknown) => {
      bodyRead();
      next(err === undefined ? undefined : bodyError(err));
    });
  };
}

/** How long a JSON body may send nothing before its connection is cut. */
export const BODY_IDLE_MS = 60_000;

/**
 * Cuts `req` if its body sends nothing for `idleMs` while it is read; call the function returned
 * once the body is read (the cut then ends: what runs after may take its time).
 */
export function cutIdleBody(req: Request, idleMs = BODY_IDLE_MS): () => void {
  if (req.complete) return () => undefined;
  req.setTimeout(idleMs, () => req.destroy(new Error('aborted')));
  return () => {
    if (req.socket) req.setTimeout(0);
  };
}

/**
 * What every Ferry HTTP app sets on its Nest application (created with `bodyParser: false`):
 * JSON bodies parsed only where a route takes JSON, so an uploaded part whose content type
 * happens to be JSON still streams to disk; no whole-request timeout (a 5 GiB part takes as long
 * as it takes; idle sockets are cut by the handlers instead); the `x-powered-by` banner off; and
 * requests Node's parser refuses answered with a JSON `{code, message}` body (answerClientErrors).
 */
export function configureHttpApp(app: INestApplication, options: HttpAppOptions): void {
  app.use(jsonBodies(options));
  const express = app.getHttpAdapter().getInstance() as { disable(setting: string): void };
  express.disable('x-powered-by');
  const server = app.getHttpServer() as Server;
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 65_000;
  answerClientErrors(server);
}

/** A request to a signed URL, for UrlSigner.verifyRequest (the raw path: percent-encoding kept). */
export function signedRequestOf(req: Request): SignedRequest {
  return { method: req.method, path: req.path, query: req.query as Record<string, unknown>, header: (name) => req.header(name) };
}

/** Base URL (`scheme://host[:port]`) of signed links: the configured public URL, else the Host the request came to. */
export function publicBaseUrl(req: Request, configured: string | undefined): string {
  if (configured) return configured;
  return `${req.protocol}://${req.headers.host ?? 'localhost'}`;
}

/** body-parser failures (they carry `type`) as domain errors (INVALID_ARGUMENT); anything else as it is. */
export function bodyError(err: unknown): unknown {
  const type = (err as { type?: unknown }).type;
  if (type === 'entity.parse.failed') return new InvalidArgumentError('body is not valid JSON');
  // the client's mistake, not a busy server: a 4xx it will not retry
  if (type === 'entity.too.large')
    return new InvalidArgumentError(`request body is larger than the ${(err as { limit?: number }).limit ?? 1048576} bytes allowed`);
  if (typeof type === 'string') return new InvalidArgumentError(`bad request body (${type})`);
  return err;
}

/**
 * First step of an HTTP app's graceful shutdown: stop accepting connections, let the requests in
 * flight finish (a part being PUT completes and is acknowledged), and close keep-alive connections
 * as soon as they are idle (Nest's own close waits for clients to drop them, seconds later).
 * Nest then runs the shutdown hooks (Redis, hash threads) once the server is closed.
 */
export function drainHttpServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    // responses sent from now on close their connection instead of keeping it alive
    server.on('request', (_req, res: { setHeader(name: string, value: string): void; headersSent: boolean }) => {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    });
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    server.close(() => {
      clearInterval(idle);
      resolve();
    });
    server.closeIdleConnections();
  });
}
