import express, { type NextFunction, type Request, type Response } from 'express';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { ferryErrorBody, toEdgeError } from './error.filter';
import { type RangedContent, sendRange } from './range';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

describe('sendRange (real sockets, real files)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-send-range-'));
  const data = randomBytes(100_000);
  const big = randomBytes(16 * 1024 * 1024);
  const etag = `"${sha256(data)}"`;
  /** The reads the routes made, with the file streams they opened. */
  let reads: { start: number; end: number; stream: ReadStream }[] = [];
  let server: Server;
  let base: string;

  /** `[start, end)` of a file on disk, as storage reads a blob. */
  function fileOf(path: string): (start: number, end: number) => ReadStream {
    return (start, end) => {
      const stream = createReadStream(path, { start, end: end - 1 });
      reads.push({ start, end, stream });
      return stream;
    };
  }

  beforeAll(async () => {
    writeFileSync(join(dir, 'data'), data);
    writeFileSync(join(dir, 'big'), big);
    writeFileSync(join(dir, 'empty'), Buffer.alloc(0));
    const contents: Record<string, RangedContent> = {
      data: {
        size: data.length,
        etag,
        contentType: 'application/pdf',
        fileName: 'report 2026 ü.pdf',
        md5Hex: md5(data),
        cacheControl: 'private, no-cache',
        read: fileOf(join(dir, 'data')),
      },
      plain: { size: data.length, etag, contentType: 'application/binary', read: fileOf(join(dir, 'data')) },
      big: { size: big.length, etag: `"${sha256(big)}"`, contentType: 'application/binary', read: fileOf(join(dir, 'big')) },
      empty: { size: 0, etag: `"${sha256(Buffer.alloc(0))}"`, contentType: 'text/plain', read: fileOf(join(dir, 'empty')) },
      gone: { size: 1000, etag: '"gone"', contentType: 'application/binary', read: fileOf(join(dir, 'no-such-file')) },
      // the first bytes, then the storage fails
      broken: {
        size: 1000,
        etag: '"broken"',
        contentType: 'application/binary',
        read: () =>
          new Readable({
            read() {
              if (this.readableLength > 0 || this.destroyed) return;
              this.push(Buffer.alloc(100));
              setTimeout(() => this.destroy(new Error('the disk went away')), 20);
            },
          }),
      },
    };
    const app = express();
    app.get('/:name', (req: Request<{ name: string }>, res: Response, next: NextFunction) => {
      sendRange(req, res, contents[req.params.name]).catch(next);
    });
    // as FerryErrorFilter answers
    app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
      const { status, body } = ferryErrorBody(toEdgeError(err));
      res.status(status).json(body);
    });
    server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  beforeEach(() => {
    reads = [];
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (name: string, headers: Record<string, string> = {}, method = 'GET') => fetch(`${base}/${name}`, { method, headers });
  const bytes = async (r: globalThis.Response) => Buffer.from(await r.arrayBuffer());

  it('sends the whole content with 200, its type, name, length, ETag, Cache-Control and Content-MD5', async () => {
    const r = await get('data');
    expect(r.status).toBe(200);
    expect(
      Object.fromEntries(['content-type', 'content-length', 'accept-ranges', 'etag', 'cache-control'].map((h) => [h, r.headers.get(h)])),
    ).toEqual({
      'content-type': 'application/pdf',
      'content-length': String(data.length),
      'accept-ranges': 'bytes',
      etag,
      'cache-control': 'private, no-cache',
    });
    expect(r.headers.get('content-disposition')).toBe(`attachment; filename*=UTF-8''${encodeURIComponent('report 2026 ü.pdf')}`);
    expect(r.headers.get('content-md5')).toBe(Buffer.from(md5(data), 'hex').toString('base64'));
    expect(r.headers.get('content-range')).toBeNull();
    expect((await bytes(r)).equals(data)).toBe(true);
  });

  it('leaves out what a caller does not give: no Content-Disposition, Cache-Control or Content-MD5', async () => {
    const r = await get('plain');
    expect([r.status, r.headers.get('content-type'), r.headers.get('etag')]).toEqual([200, 'application/binary', etag]);
    for (const h of ['content-disposition', 'cache-control', 'content-md5']) expect([h, r.headers.get(h)]).toEqual([h, null]);
    expect((await bytes(r)).equals(data)).toBe(true);
  });

  it('answers a single range with 206, Content-Range and only those bytes read, and no Content-MD5', async () => {
    for (const [range, start, end] of [
      ['bytes=1000-1999', 1000, 2000],
      ['bytes=-10', data.length - 10, data.length],
      ['bytes=99990-', 99_990, data.length],
      ['bytes=99990-200000', 99_990, data.length],
    ] as const) {
      reads = [];
      const r = await get('data', { Range: range });
      expect([range, r.status, r.headers.get('content-range')]).toEqual([range, 206, `bytes ${start}-${end - 1}/${data.length}`]);
      expect([r.headers.get('content-length'), r.headers.get('etag'), r.headers.get('content-md5')]).toEqual([
        String(end - start),
        etag,
        null,
      ]);
      expect((await bytes(r)).equals(data.subarray(start, end))).toBe(true);
      expect(reads.map(({ start, end }) => ({ start, end }))).toEqual([{ start, end }]);
    }
  });

  it('sends the whole for several ranges or another unit (a server may ignore them)', async () => {
    for (const range of ['bytes=0-1,5-6', 'items=0-1']) {
      const r = await get('data', { Range: range });
      expect([range, r.status, r.headers.get('content-range')]).toEqual([range, 200, null]);
      expect((await bytes(r)).equals(data)).toBe(true);
    }
  });

  it('refuses an unsatisfiable range with the error body and Content-Range bytes */size, reading nothing', async () => {
    for (const [name, range, size] of [
      ['data', `bytes=${data.length}-`, data.length],
      ['data', 'bytes=5-4', data.length],
      ['empty', 'bytes=0-', 0],
    ] as const) {
      const r = await get(name, { Range: range });
      expect([range, r.status, r.headers.get('content-range')]).toEqual([range, 416, `bytes */${size}`]);
      // the error answer does not describe the content (Express tags the JSON body itself)
      expect(r.headers.get('etag')).not.toBe(etag);
      expect(r.headers.get('content-disposition')).toBeNull();
      expect(await r.json()).toMatchObject({ code: 'OUT_OF_RANGE', message: expect.stringMatching(/not satisfiable/) });
    }
    expect(reads).toEqual([]);
  });

  it('answers 304 to an If-None-Match naming the ETag (weak comparison, lists, *), before any Range', async () => {
    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      for (const headers of [{ 'If-None-Match': inm }, { 'If-None-Match': inm, Range: 'bytes=0-9' }] as Record<string, string>[]) {
        const r = await get('data', headers);
        expect([headers, r.status, r.headers.get('etag'), r.headers.get('cache-control')]).toEqual([
          headers,
          304,
          etag,
          'private, no-cache',
        ]);
        expect([r.headers.get('content-range'), r.headers.get('content-disposition')]).toEqual([null, null]);
        expect((await bytes(r)).length).toBe(0);
      }
    }
    expect(reads).toEqual([]);
    const other = await get('data', { 'If-None-Match': '"other", W/"x"' });
    expect(other.status).toBe(200);
    expect((await bytes(other)).equals(data)).toBe(true);
  });

  it('honours Range only when If-Range holds: our strong ETag; another tag, a weak one or a date gets the whole', async () => {
    const same = await get('data', { Range: 'bytes=0-9', 'If-Range': etag });
    expect([same.status, same.headers.get('content-range')]).toEqual([206, `bytes 0-9/${data.length}`]);
    expect((await bytes(same)).equals(data.subarray(0, 10))).toBe(true);
    for (const ifRange of ['"other"', `W/${etag}`, new Date().toUTCString()]) {
      const r = await get('data', { Range: 'bytes=0-9', 'If-Range': ifRange });
      expect([ifRange, r.status, r.headers.get('content-range'), r.headers.get('content-length')]).toEqual([
        ifRange,
        200,
        null,
        String(data.length),
      ]);
      expect((await bytes(r)).equals(data)).toBe(true);
    }
    // nor is an unsatisfiable range refused when it is ignored
    const past = await get('data', { Range: `bytes=${data.length}-`, 'If-Range': '"other"' });
    expect(past.status).toBe(200);
    await bytes(past);
    // If-Range without Range is ignored
    expect((await get('data', { 'If-Range': '"other"' })).status).toBe(200);
  });

  it('answers HEAD with the headers of the GET and reads nothing', async () => {
    const whole = await get('data', {}, 'HEAD');
    expect([whole.status, whole.headers.get('content-length'), whole.headers.get('etag')]).toEqual([200, String(data.length), etag]);
    expect(whole.headers.get('content-md5')).toBe(Buffer.from(md5(data), 'hex').toString('base64'));
    const ranged = await get('data', { Range: 'bytes=10-19' }, 'HEAD');
    expect([ranged.status, ranged.headers.get('content-length'), ranged.headers.get('content-range')]).toEqual([
      206,
      '10',
      `bytes 10-19/${data.length}`,
    ]);
    expect(reads).toEqual([]);
  });

  it('sends an empty content as 200 with no bytes, without reading it', async () => {
    const r = await get('empty');
    expect([r.status, r.headers.get('content-length'), r.headers.get('etag')]).toEqual([200, '0', `"${sha256(Buffer.alloc(0))}"`]);
    expect((await bytes(r)).length).toBe(0);
    expect(reads).toEqual([]);
  });

  it('closes the file when the client goes away mid-download, and the server keeps serving', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = request(`${base}/big`, (res) => {
        expect(res.statusCode).toBe(200);
        res.once('data', () => req.destroy());
      });
      req.on('error', () => resolve());
      req.on('close', () => resolve());
      req.on('timeout', () => reject(new Error('timeout')));
      req.end();
    });
    expect(reads).toHaveLength(1);
    const [{ stream }] = reads;
    if (!stream.closed) await new Promise<void>((resolve) => stream.once('close', () => resolve()));
    expect(stream.bytesRead).toBeLessThan(big.length);
    const r = await get('data', { Range: 'bytes=0-0' });
    expect([r.status, (await bytes(r)).equals(data.subarray(0, 1))]).toEqual([206, true]);
  });

  it('answers a read that fails before its first byte with a JSON error, nothing else sent', async () => {
    const r = await get('gone');
    expect(r.status).toBe(500);
    expect(r.headers.get('content-length')).not.toBe('1000');
    expect(r.headers.get('etag')).not.toBe('"gone"');
    expect(await r.json()).toMatchObject({ code: 'INTERNAL', message: expect.any(String) });
    expect(reads).toHaveLength(1);
  });

  it('cuts the connection when the read fails after its first bytes rather than answering a short 200', async () => {
    await expect(get('broken').then((r) => r.arrayBuffer())).rejects.toThrow();
  });
});
