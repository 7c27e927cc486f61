import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { CacheFullError } from '@ferry/cache';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, LOGGER, classifyInfraError } from '@ferry/core';
import { InvalidArgumentError, toWireError } from '@ferry/errors';
import { answerClientErrors } from '@ferry/http';
import type { Logger } from '@ferry/logging';
import { HttpCacheTarget, ReapiService, parseHttpCachePath } from '@ferry/reapi';
import { uploadMetrics } from '@ferry/uploads';

/** A PUT whose body sends nothing for this long is cut (found by `npm run fuzz`: a stalled PUT was held for good). */
const PUT_IDLE_MS = 60_000;

const METHODS = new Set(['GET', 'HEAD', 'PUT']);
/** How long a shutdown lets requests in flight finish before their connections are closed. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * Bazel's HTTP cache protocol on FERRY_CACHE_HTTP_PORT (8084): `GET`/`HEAD`/`PUT`
 * `[/{instance}]/ac/{sha256}` and `[/{instance}]/cas/{sha256}`, over the same action cache and CAS
 * as the REAPI gRPC face (the rules are ReapiService's). Bearer tokens (`Authorization: Bearer`,
 * or none for FERRY_ANONYMOUS_SCOPES) and the REAPI scopes; TLS with the gRPC port's certificate
 * (and client CA) when FERRY_GRPC_TLS_* are set. Bodies stream both ways. Errors are JSON
 * `{code, message}` with the status of Ferry's one status table.
 */
@Injectable()
export class CacheHttpServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private server?: Server;

  constructor(
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly service: ReapiService,
    private readonly auth: Authenticator,
  ) {}

  /** The port actually bound. */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async onApplicationBootstrap(): Promise<void> {
    const tls = this.config.grpc.tls;
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    // requestTimeout 0: a PUT of a large blob may take longer than Node's default 5 minutes
    const options = { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000 };
    const server: Server = tls
      ? createTlsServer(
          {
            ...options,
            cert: tls.cert,
            key: tls.key,
            ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
          },
          handler,
        )
      : createServer(options, handler);
    // what Node's parser refuses is answered with a JSON {code, message} body too
    answerClientErrors(server);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.ports.cacheHttp, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.logger.info({ port: this.port, tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off' }, 'ingest-grpc HTTP cache listening');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? '';
    let target: HttpCacheTarget | undefined;
    try {
      target = parseHttpCachePath(req.url ?? '/');
      if (!METHODS.has(method)) {
        this.fail(req, res, { status: 405, code: 'INVALID_ARGUMENT', message: `method ${method} is not served; use GET, HEAD or PUT` });
        return;
      }
      const principal = this.auth.authenticateBearer(req.headers.authorization);
      const { instance, hash } = target;
      if (method === 'PUT') {
        // a body that stops arriving is cut, as the other faces cut theirs (no whole-request timeout here)
        req.setTimeout(PUT_IDLE_MS, () => req.destroy(new Error('aborted')));
        const encoding = req.headers['content-encoding'];
        if (encoding && encoding !== 'identity') {
          throw new InvalidArgumentError(`Content-Encoding ${encoding} is not supported; send the bytes as they are`);
        }
        const length = contentLength(req);
        if (target.store === 'ac') await this.service.httpPutActionResult(principal, instance, hash, length, req);
        else {
          if (length === undefined) throw new InvalidArgumentError('a PUT to /cas/ needs a Content-Length (the blob size)');
          await this.service.httpPutCasBlob(principal, instance, hash, length, req);
        }
        res.writeHead(200, { 'content-length': 0 }).end();
        return;
      }
      if (target.store === 'ac') {
        const bytes = await this.service.httpGetActionResult(principal, instance, hash);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
        res.end(method === 'HEAD' ? undefined : bytes);
        return;
      }
      const blob = await this.service.httpCasBlob(principal, instance, hash);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.size });
      if (method === 'HEAD' || blob.size === 0) {
        res.end();
        return;
      }
      const sent = uploadMetrics.bytesSent.labels({ protocol: 'http-cache' });
      const stream = blob.read();
      stream.on('data', (chunk: Buffer) => sent.inc(chunk.length));
      await pipeline(stream, res);
    } catch (err) {
      const wire = toWireError(classifyInfraError(err));
      if (!wire.expected) this.logger.error({ err, method, url: req.url }, 'unexpected error');
      else this.logger.debug({ method, url: req.url, code: wire.code, message: wire.message }, 'request refused');
      // (Bazel's HTTP cache: a full store is 507, as bazel-remote and nginx answer, not a 429 rate limit)
      this.fail(req, res, { status: err instanceof CacheFullError ? 507 : wire.http, code: wire.code, message: wire.message });
    }
  }

  /** Answers an error as JSON `{code, message}`; once the headers are gone, the connection is cut instead. */
  private fail(req: IncomingMessage, res: ServerResponse, e: { status: number; code: string; message: string }): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ code: e.code, message: e.message });
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    if (e.status === 401) headers['www-authenticate'] = 'Bearer';
    if (e.status === 405) headers['allow'] = 'GET, HEAD, PUT';
    // a body left unread (a PUT refused before it was read) is not worth receiving: close after the answer
    if (!req.complete) headers['connection'] = 'close';
    res.writeHead(e.status, headers).end(req.method === 'HEAD' ? undefined : body);
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    force.unref();
    await closed;
    clearTimeout(force);
  }
}

/** The request's Content-Length, undefined when it has none (chunked); INVALID_ARGUMENT when malformed. */
function contentLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined) return undefined;
  if (!/^\d{1,15}$/.test(header)) throw new InvalidArgumentError(`Content-Length ${JSON.stringify(header)} is not a size`);
  return Number(header);
}
