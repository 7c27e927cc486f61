import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** What Node's parser refuses (its error codes), as Node answers it, with the `code` of Ferry's JSON errors. */
function refusalOf(err: NodeJS.ErrnoException): { status: number; reason: string; code: string; message: string } {
  if (err.code === 'HPE_HEADER_OVERFLOW')
    return { status: 431, reason: 'Request Header Fields Too Large', code: 'INVALID_ARGUMENT', message: 'request headers are too large' };
  if (err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW')
    return { status: 413, reason: 'Payload Too Large', code: 'INVALID_ARGUMENT', message: 'chunk extensions are too large' };
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { status: 408, reason: 'Request Timeout', code: 'DEADLINE_EXCEEDED', message: 'the request headers did not arrive in time' };
  return { status: 400, reason: 'Bad Request', code: 'INVALID_ARGUMENT', message: `malformed HTTP request (${err.code ?? 'parse error'})` };
}

/**
 * Requests Node's HTTP parser refuses before any route sees them (a Content-Length that is not a
 * number or given twice, a bad chunk, headers too large, an `Expect` other than 100-continue) are
 * answered like every other refusal of Ferry: a JSON `{code, message}` body, where Node by itself
 * answers 400 / 417 with none (found by `npm run fuzz`, issue 21).
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // an answer already under way (the error came mid-body) cannot be followed by another one
    const answering = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
    if (err.code === 'ECONNRESET' || !socket.writable || answering) {
      socket.destroy();
      return;
    }
    const r = refusalOf(err);
    const body = JSON.stringify({ code: r.code, message: r.message });
    socket.end(
      `HTTP/1.1 ${r.status} ${r.reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify({
      code: 'FAILED_PRECONDITION',
      message: `Expect: ${JSON.stringify(req.headers.expect)} is not supported (only 100-continue)`,
    });
    res.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}
