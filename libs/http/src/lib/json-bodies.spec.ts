import express, { type Request, type Response } from 'express';
import type { Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { jsonBodies } from './http-app';

describe('jsonBodies (real sockets)', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    const app = express();
    app.use(jsonBodies({ streamedPaths: /^\/streamed/, bodyIdleMs: 300 }));
    app.post('/slow', async (req: Request, res: Response) => {
      // a handler that takes longer than the body idle cut: not cut, the body was whole
      await new Promise((r) => setTimeout(r, 600));
      res.json({ got: req.body });
    });
    server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('cuts a JSON body that stops arriving', async () => {
    const started = Date.now();
    const closed = await new Promise<number>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () =>
        socket.write('POST /slow HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":'),
      );
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Date.now() - started));
    });
    expect(closed).toBeGreaterThanOrEqual(250);
    expect(closed).toBeLessThan(5000);
  });

  it('lets a handler that takes its time answer once the body is whole', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/slow`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ got: { a: 1 } });
  });
});
