import { Socket, connect } from 'node:net';

/** A request as bytes on a fresh TCP connection: anything a client could send, well-formed or not. */
export interface RawRequest {
  method: string;
  /** The request target, sent as is (no encoding). */
  target: string;
  headers: [string, string][];
  body: Buffer;
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The server closed the connection without an answer (a refused request line, a reset). */
  closedWithoutAnswer?: boolean;
}

export class Hang extends Error {}

/** The bytes of `r`: request line, headers as given (plus `connection: close`), blank line, body. */
export function encodeRequest(r: RawRequest): Buffer {
  const head = [`${r.method} ${r.target} HTTP/1.1`, ...r.headers.map(([n, v]) => `${n}: ${v}`), 'connection: close', '', ''].join('\r\n');
  return Buffer.concat([Buffer.from(head, 'latin1'), r.body]);
}

function decodeChunked(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) break;
    const size = parseInt(b.subarray(i, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** Parses the first HTTP/1.1 answer in `b` (what a `connection: close` exchange returns). */
export function parseAnswer(b: Buffer, method: string): RawAnswer {
  const end = b.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: Buffer.alloc(0), closedWithoutAnswer: true };
  const [statusLine, ...lines] = b.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const c = l.indexOf(':');
    headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  let body = b.subarray(end + 4);
  if (method === 'HEAD' || status === 204 || status === 304) body = Buffer.alloc(0);
  else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = decodeChunked(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body };
}

/**
 * Sends `bytes` to 127.0.0.1:`port` and reads until the server closes (or, for HEAD and answers
 * with a length, until the answer is whole). Rejects with Hang after `timeoutMs`.
 */
export function rawExchange(port: number, bytes: Buffer, method: string, timeoutMs: number): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(parseAnswer(Buffer.concat(chunks), method));
    };
    const timer = setTimeout(() => finish(new Hang(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (whole(Buffer.concat(chunks), method)) finish();
    });
    // a reset after the answer (the server refusing the rest of the body) still counts as that answer
    socket.on('error', (err) => (chunks.length ? finish() : finish(err)));
    socket.on('close', () => finish());
  });
}

/** Whether `b` holds one whole answer (so the client needn't wait for the server to close). */
function whole(b: Buffer, method: string): boolean {
  const end = b.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const a = parseAnswer(b, method);
  if (method === 'HEAD' || a.status === 204 || a.status === 304) return true;
  if (a.headers['content-length'] !== undefined) return b.length - end - 4 >= Number(a.headers['content-length']);
  if (/chunked/i.test(a.headers['transfer-encoding'] ?? '')) return b.subarray(end).includes('\r\n0\r\n\r\n');
  return false;
}

/** A connection that sent `bytes` and then nothing: resolves when the server closes it. */
export function stalledConnection(
  port: number,
  bytes: Buffer,
): { socket: Socket; closed: Promise<{ afterMs: number; answer: RawAnswer }> } {
  const started = Date.now();
  const socket = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  const closed = new Promise<{ afterMs: number; answer: RawAnswer }>((resolve) => {
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ afterMs: Date.now() - started, answer: parseAnswer(Buffer.concat(chunks), 'GET') }));
  });
  return { socket, closed };
}
