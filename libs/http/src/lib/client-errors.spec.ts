import { type Server, createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { answerClientErrors } from './client-errors';

/** Sends raw bytes and reads until the server closes. */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));

describe('answerClientErrors', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((_req, res) => res.end('ok'));
    answerClientErrors(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers a request the parser refuses with 400 and a JSON {code, message} body', async () => {
    const answer = await exchange(port, 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(bodyOf(answer)).toEqual({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('malformed HTTP request') });
  });

  it('answers headers too large with 431 and a JSON body', async () => {
    const answer = await exchange(port, `GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(bodyOf(answer)).toEqual({ code: 'INVALID_ARGUMENT', message: expect.any(String) });
  });

  it('answers an Expect other than 100-continue with 417 and a JSON body', async () => {
    const answer = await exchange(port, 'GET / HTTP/1.1\r\nhost: x\r\nexpect: 0x10\r\nconnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 417 /);
    expect(bodyOf(answer)).toEqual({ code: 'FAILED_PRECONDITION', message: expect.stringContaining('100-continue') });
  });

  it('leaves good requests alone', async () => {
    const answer = await exchange(port, 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
  });
});
