import { type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string | number>;
  /** The whole body, or a stream of it (sent as it comes, with backpressure). */
  body?: Buffer | Readable;
  /** https: the CA to trust, and a client certificate and key for mutual TLS. */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * One HTTP(S) request over a fresh connection (no agent), answered with status, headers and the
 * whole response body. Rejects when the connection fails (a refused TLS handshake, a reset).
 */
export function request(url: string, o: HttpRequestOptions = {}): Promise<HttpAnswer> {
  const secure = url.startsWith('https:');
  return new Promise((resolve, reject) => {
    const options = { method: o.method ?? 'GET', headers: o.headers ?? {}, agent: false as const };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    };
    const req = secure
      ? httpsRequest(url, { ...options, ca: o.ca, cert: o.cert, key: o.key }, onResponse)
      : httpRequest(url, options, onResponse);
    req.on('error', reject);
    if (!o.body) req.end();
    else if (Buffer.isBuffer(o.body)) req.end(o.body);
    else {
      o.body.on('error', (err) => req.destroy(err));
      o.body.pipe(req);
    }
  });
}

/** An HTTP answer's body as JSON (for `{code, message}` errors). */
export function jsonOf(answer: HttpAnswer): unknown {
  return JSON.parse(answer.body.toString('utf8'));
}
