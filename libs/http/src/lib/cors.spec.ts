import express, { type NextFunction, type Request, type Response } from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { CORS_EXPOSED_HEADERS, type CorsOptions, corsMiddleware, methodOverrideMiddleware } from './cors';

/** A bare Express app on a loopback socket: the middleware, then routes that say which method they saw. */
async function serve(options: CorsOptions): Promise<{ base: string; close(): Promise<void> }> {
  const app = express();
  app.use(corsMiddleware(options));
  app.use(methodOverrideMiddleware(/^\/files(\/|$)/));
  app.all('/{*any}', (req: Request, res: Response) => {
    res.status(200).json({ method: req.method, path: req.path });
  });
  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(400).json({ code: 'INVALID_ARGUMENT', message: err.message });
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('corsMiddleware and methodOverrideMiddleware (real sockets)', () => {
  let listed: { base: string; close(): Promise<void> };

  beforeAll(async () => {
    listed = await serve({ origins: ['https://a.example'] });
  });

  afterAll(async () => {
    await listed.close();
  });

  it('treats as a preflight only an OPTIONS with both Origin and Access-Control-Request-Method', async () => {
    const noOrigin = await fetch(`${listed.base}/x`, { method: 'OPTIONS', headers: { 'Access-Control-Request-Method': 'PUT' } });
    expect([noOrigin.status, noOrigin.headers.get('access-control-allow-methods')]).toEqual([200, null]);
    const plain = await fetch(`${listed.base}/x`, { method: 'OPTIONS', headers: { Origin: 'https://a.example' } });
    expect([plain.status, plain.headers.get('access-control-allow-origin')]).toEqual([200, 'https://a.example']);
    expect(plain.headers.get('access-control-allow-methods')).toBeNull();
    const real = await fetch(`${listed.base}/x`, {
      method: 'OPTIONS',
      headers: { Origin: 'https://a.example', 'Access-Control-Request-Method': 'PUT' },
    });
    expect([real.status, await real.text()]).toEqual([204, '']);
    expect(real.headers.get('access-control-allow-methods')).toContain('PUT');
  });

  it('exposes the listed headers and varies on Origin', async () => {
    const r = await fetch(`${listed.base}/x`, { headers: { Origin: 'https://a.example' } });
    expect(r.headers.get('access-control-expose-headers')).toBe(CORS_EXPOSED_HEADERS.join(', '));
    expect(r.headers.get('vary')).toBe('Origin');
    // the comparison is exact: another port, scheme or host is not the listed origin
    for (const origin of ['https://a.example:8443', 'http://a.example', 'https://b.example']) {
      const other = await fetch(`${listed.base}/x`, { headers: { Origin: origin } });
      expect([origin, other.headers.get('access-control-allow-origin')]).toEqual([origin, null]);
    }
  });

  it('routes a POST on the tus paths as the method X-HTTP-Method-Override names, and nothing else', async () => {
    const seen = async (method: string, path: string, override?: string) => {
      const r = await fetch(`${listed.base}${path}`, { method, headers: override ? { 'X-HTTP-Method-Override': override } : {} });
      return [r.status, ((await r.json()) as { method?: string }).method];
    };
    expect(await seen('POST', '/files/abc', 'PATCH')).toEqual([200, 'PATCH']);
    expect(await seen('POST', '/files', ' delete ')).toEqual([200, 'DELETE']);
    expect(await seen('POST', '/files/abc')).toEqual([200, 'POST']);
    expect(await seen('PUT', '/files/abc', 'PATCH')).toEqual([200, 'PUT']); // only a POST is overridden
    expect(await seen('POST', '/filesystem', 'PATCH')).toEqual([200, 'POST']); // only on the paths given
    expect(await seen('POST', '/file/multipart/u/parts/1', 'DELETE')).toEqual([200, 'POST']);
    expect(await seen('POST', '/files/abc', 'GET')).toEqual([400, undefined]);
  });
});
