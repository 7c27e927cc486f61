import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { type ClientRequest, type IncomingMessage, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { AuthError, CliError, InterruptedError, LocalFileError, NotFoundError, RefusedError, TransientError } from './errors';
import type { TransferContext } from './transfer';
import { connectionError, pacer } from './transfer';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export function request(url: string, method: string, headers: Record<string, string>): ClientRequest {
  const u = new URL(url);
  return (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method, headers });
}

/** One request with a small (or no) body; the whole answer. */
export function call(method: string, url: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, method, body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) });
    req.setTimeout(120_000, () => req.destroy(new Error('no answer for 120 s')));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      res.on('error', (err) => reject(connectionError(`${method} ${url}`, err)));
    });
    req.on('error', (err) => reject(connectionError(`${method} ${new URL(url).origin}`, err)));
    req.end(body);
  });
}

/** The JSON body of an answer (undefined if it is not JSON). */
export function jsonOf<T>(a: Answer): T | undefined {
  try {
    return JSON.parse(a.text) as T;
  } catch {
    return undefined;
  }
}

/** The typed error of an HTTP answer: one line with the server's `code` and `message`. */
export function httpError(where: string, a: Answer, credentials = 'FERRY_TOKEN or --token'): CliError {
  const body = jsonOf<{ code?: string; message?: string }>(a);
  const words = body ? `${body.code ?? ''} ${body.message ?? ''}`.trim() : a.text.split('\n')[0].slice(0, 200);
  const line = `${where}: ${a.status}${words ? ` ${words}` : ''}`;
  if (a.status === 401) return new AuthError(`${line} (check ${credentials})`);
  if (a.status === 403 && !/expired/i.test(words)) return new AuthError(line);
  if (a.status === 404 || a.status === 410) return new NotFoundError(line);
  // 409: a killed writer's lease still holds it; 403 "expired": a presigned URL to renew; 5xx, 429: try again
  if (a.status === 403 || a.status === 408 || a.status === 409 || a.status === 423 || a.status === 429 || a.status >= 500) {
    return new TransientError(line);
  }
  return new RefusedError(line);
}

/**
 * Sends bytes `[start, end)` of `path` as the body of one request (PUT, PATCH), paced and shown
 * as progress (`shown(n)` with the bytes of this body sent so far); Ctrl-C destroys it
 * (InterruptedError). Resolves with the answer, whatever its status.
 */
export function sendFileRange(
  method: string,
  url: string,
  headers: Record<string, string>,
  path: string,
  start: number,
  end: number,
  ctx: TransferContext,
  shown: (sent: number) => void,
  pace = pacer(ctx.options.rateLimit, ctx.signal),
): Promise<Answer> {
  const { signal } = ctx;
  return new Promise<Answer>((resolve, reject) => {
    if (signal.aborted) return reject(new InterruptedError('interrupted', start));
    const req = request(url, method, { ...headers, 'content-length': String(end - start) });
    const stream = end > start ? createReadStream(path, { start, end: end - 1, highWaterMark: 256 * 1024 }) : undefined;
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      stream?.destroy();
      fn();
    };
    const onAbort = () => {
      req.destroy();
      finish(() => reject(new InterruptedError('interrupted', start)));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        finish(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() })),
      );
      res.on('error', (err) => finish(() => reject(connectionError(`${method} ${new URL(url).origin}`, err))));
    });
    req.on('error', (err) => finish(() => reject(connectionError(`${method} ${new URL(url).origin}`, err))));
    if (!stream) return void req.end();
    (async () => {
      let sent = 0;
      for await (const chunk of stream) {
        const data = chunk as Buffer;
        if (done) return;
        if (!req.write(data)) await new Promise((r) => req.once('drain', r));
        sent += data.length;
        shown(sent);
        await pace(data.length);
      }
      req.end();
    })().catch((err: Error) => {
      req.destroy();
      finish(() => reject(new LocalFileError(`${path}: ${err.message}`)));
    });
  });
}

/**
 * GETs `url` into `file` from its current size (`Range: bytes=<size>-`): a partial local file is
 * continued. The total size from Content-Range (or Content-Length), checked at the end.
 */
export async function rangedDownload(
  where: string,
  url: string,
  headers: Record<string, string>,
  file: string,
  ctx: TransferContext,
): Promise<void> {
  const { signal, progress } = ctx;
  const pace = pacer(ctx.options.rateLimit, signal);
  const fh = await open(file, 'a').catch((err: NodeJS.ErrnoException) => {
    throw new LocalFileError(`${file}: cannot write it (${err.code})`);
  });
  try {
    let offset = (await fh.stat()).size;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, 'GET', { ...headers, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) });
      const onAbort = () => req.destroy(new Error('interrupted'));
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal.removeEventListener('abort', onAbort));
      req.on('response', resolve);
      req.on('error', (err) =>
        reject(signal.aborted ? new InterruptedError(`download interrupted at byte ${offset}`, offset) : connectionError(where, err)),
      );
      req.end();
    });
    if (res.statusCode === 416) {
      res.resume();
      return; // the local file is whole already (checked against the sha256 next)
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      throw httpError(where, { status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() });
    }
    if (res.statusCode === 200 && offset > 0) {
      // the server ignored the range: start the file again
      await fh.truncate(0);
      offset = 0;
    }
    const range = /\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''));
    const total = range ? Number(range[1]) : offset + Number(res.headers['content-length']);
    progress.start(total, offset);
    const onAbortBody = () => res.destroy(new Error('interrupted'));
    signal.addEventListener('abort', onAbortBody, { once: true });
    try {
      for await (const chunk of res) {
        const data = chunk as Buffer;
        await fh.write(data);
        offset += data.length;
        progress.update(offset);
        await pace(data.length);
      }
    } catch (err) {
      if (signal.aborted) throw new InterruptedError(`download interrupted at byte ${offset} of ${total}`, offset);
      throw connectionError(where, err);
    } finally {
      signal.removeEventListener('abort', onAbortBody);
      progress.end();
    }
    if (signal.aborted) throw new InterruptedError(`download interrupted at byte ${offset} of ${total}`, offset);
    if (offset !== total) throw new TransientError(`${where}: the download ended at byte ${offset} of ${total}`);
  } finally {
    await fh.close();
  }
}
