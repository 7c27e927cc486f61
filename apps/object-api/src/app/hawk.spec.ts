import { request as httpRequest } from 'node:http';
import { createHash } from 'node:crypto';
import * as hawk from 'hawk';
import { hawkHeader, sha256Hex } from '@ferry/testing';
import { ObjectHarness, startObjectApi } from '../testing/object.harness';

/**
 * Hawk as Taskcluster verifies it (libraries/api, remoteAuthentication) that the other suites do
 * not reach: the port a proxy reports, payload hashes, and the body limit answered before them.
 */

/** The hawk client's header() with a payload, which it hashes into `hash` (the declaration in @ferry/testing leaves these options out). */
const headerWithPayload = hawk.client.header as unknown as (
  uri: string,
  method: string,
  options: { credentials: { id: string; key: string; algorithm: 'sha256' }; payload: string; contentType: string },
) => { header: string };

type Json = Record<string, unknown>;
type Answer = { status: number; body: Json };

const slugid = () => Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex').toString('base64url');
const enc = encodeURIComponent;

describe('object-api Hawk behind proxies, with payload hashes, and its body limit', () => {
  let h: ObjectHarness;
  const expires = new Date(Date.now() + 86_400_000).toISOString();

  beforeAll(async () => {
    h = await startObjectApi();
  });

  afterAll(async () => {
    await h.close();
  });

  /** A request as a proxy forwards it: any Host and X-Forwarded-* headers, the body written as given (chunked without content-length). */
  function send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string | string[],
    options: { chunked?: boolean } = {},
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const chunks = body === undefined ? [] : Array.isArray(body) ? body : [body];
      const length = options.chunked ? {} : { 'content-length': String(chunks.reduce((n, c) => n + Buffer.byteLength(c), 0)) };
      const req = httpRequest(`${h.base}${path}`, { method, headers: { ...(body === undefined ? {} : length), ...headers } }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          const json = res.headers['content-type']?.includes('json') && text ? (JSON.parse(text) as Json) : { text };
          resolve({ status: res.statusCode ?? 0, body: json });
        });
      });
      req.on('error', reject);
      for (const c of chunks) req.write(c);
      req.end();
    });
  }

  describe('the port a client signed, behind a proxy (the MAC covers host and port)', () => {
    const path = `/api/object/v1/metadata/${enc('no such object')}`;
    /** 404 (ResourceNotFound): authenticated; 401: the MAC did not match. */
    const get = async (signedFor: string, headers: Record<string, string>) =>
      (await send('GET', path, { authorization: hawkHeader(`${signedFor}${path}`, 'GET', 'reader', 'reader-token'), ...headers })).status;

    it('takes the port from X-Forwarded-Port when a proxy sends it', async () => {
      // TLS terminated at the proxy, which passes the Host without the default port it was called on
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-port': '443' })).toBe(404);
      expect(
        await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443' }),
      ).toBe(404);
      // a non-default public port the proxy drops from the Host (nginx's $host)
      expect(
        await get('https://ferry.example.com:8443', {
          host: 'ferry.example.com',
          'x-forwarded-proto': 'https',
          'x-forwarded-port': '8443',
        }),
      ).toBe(404);
      // a proxy that reports the port it listens on and passes its own port in the Host
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com:8080', 'x-forwarded-port': '443' })).toBe(404);
      // a chain of proxies: the first is the one the client called
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-port': '443, 8080' })).toBe(404);
      // the forwarded port is the one checked
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-port': '8443' })).toBe(401);
      expect(await get('https://ferry.example.com:8443', { host: 'ferry.example.com', 'x-forwarded-port': '443' })).toBe(401);
    });

    it('without X-Forwarded-Port, takes 443 from X-Forwarded-Proto https, as Taskcluster', async () => {
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-proto': 'https' })).toBe(404);
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-proto': 'HTTPS, http' })).toBe(404);
      // Taskcluster takes 443 even when the Host carries a port (a proxy's own); the Host's port is still accepted
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com:8080', 'x-forwarded-proto': 'https' })).toBe(404);
      expect(await get('https://ferry.example.com:8443', { host: 'ferry.example.com:8443', 'x-forwarded-proto': 'https' })).toBe(404);
      // plain HTTP: the Host's port, or 80
      expect(await get('http://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-proto': 'http' })).toBe(404);
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com', 'x-forwarded-proto': 'http' })).toBe(401);
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com' })).toBe(401);
      expect(await get('https://ferry.example.com', { host: 'ferry.example.com:8080' })).toBe(401);
    });
  });

  describe('payload hashes', () => {
    /** A call signed by `clientId` with a payload hash of `signedBody`, sending `body` (the same unless tampered). */
    const signedCall = (
      method: string,
      route: string,
      clientId: 'uploader' | 'reader',
      signedBody: unknown,
      sent: { body?: string; contentType?: string } = {},
    ): Promise<Answer> => {
      const path = `/api/object/v1${route}`;
      const payload = JSON.stringify(signedBody);
      const credentials = { id: clientId, key: `${clientId}-token`, algorithm: 'sha256' as const };
      const { header } = headerWithPayload(`${h.base}${path}`, method, { credentials, payload, contentType: 'application/json' });
      expect(header).toMatch(/ hash="/);
      return send(method, path, { authorization: header, 'content-type': sent.contentType ?? 'application/json' }, sent.body ?? payload);
    };
    const refused = (r: Answer) =>
      expect([r.status, r.body]).toEqual([401, { code: 'AuthenticationFailed', message: expect.stringMatching(/invalid payload hash/) }]);

    it('accepts bodies that match their hash, in createUpload, finishUpload and startDownload, and refuses tampered ones (401)', async () => {
      const name = 'hawk/hashed.txt';
      const data = Buffer.from('signed bytes');
      const uploadId = slugid();
      const create = {
        projectId: 'proj/a',
        uploadId,
        expires,
        proposedUploadMethods: { dataInline: { contentType: 'text/plain', objectData: data.toString('base64') } },
      };
      // tampered: another object's data, the same hash and MAC
      const evil = { ...create, proposedUploadMethods: { dataInline: { contentType: 'text/plain', objectData: 'ZXZpbA==' } } };
      refused(await signedCall('PUT', `/upload/${enc(name)}`, 'uploader', create, { body: JSON.stringify(evil) }));
      // the content type is hashed too (without parameters, in any case)
      refused(await signedCall('PUT', `/upload/${enc(name)}`, 'uploader', create, { contentType: 'application/x-other+json' }));
      const created = await signedCall('PUT', `/upload/${enc(name)}`, 'uploader', create, {
        contentType: 'Application/JSON; charset=utf-8',
      });
      expect([created.status, created.body['uploadMethod']]).toEqual([200, { dataInline: true }]);

      const finish = { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } };
      const wrongHashes = { ...finish, hashes: { sha256: sha256Hex('other') } };
      refused(await signedCall('POST', `/finish-upload/${enc(name)}`, 'uploader', finish, { body: JSON.stringify(wrongHashes) }));
      expect((await signedCall('POST', `/finish-upload/${enc(name)}`, 'uploader', finish)).status).toBe(200);

      const start = { acceptDownloadMethods: { simple: true } };
      refused(
        await signedCall('PUT', `/start-download/${enc(name)}`, 'reader', start, {
          body: JSON.stringify({ acceptDownloadMethods: { getUrl: true } }),
        }),
      );
      const download = await signedCall('PUT', `/start-download/${enc(name)}`, 'reader', start);
      expect([download.status, download.body['method']]).toEqual([200, 'simple']);
      const stored = await fetch(String(download.body['url']));
      expect(
        createHash('sha256')
          .update(Buffer.from(await stored.arrayBuffer()))
          .digest('hex'),
      ).toBe(sha256Hex(data));
    });

    it('checks the hash of a request without a body against the empty payload, and leaves requests without a hash unchecked', async () => {
      const route = `/metadata/${enc('no such object')}`;
      const path = `/api/object/v1${route}`;
      const credentials = { id: 'reader', key: 'reader-token', algorithm: 'sha256' as const };
      const emptyHash = headerWithPayload(`${h.base}${path}`, 'GET', { credentials, payload: '', contentType: '' }).header;
      expect((await send('GET', path, { authorization: emptyHash })).status).toBe(404);
      const hashOfSomething = headerWithPayload(`${h.base}${path}`, 'GET', { credentials, payload: '{}', contentType: 'application/json' });
      refused(await send('GET', path, { authorization: hashOfSomething.header }));
      // no hash: the body is not the client's to prove (Taskcluster's clients send none)
      const good = { projectId: 'proj/a', uploadId: slugid(), expires, proposedUploadMethods: {} };
      const upload = `/api/object/v1/upload/${enc('hawk/unhashed')}`;
      const unhashed = hawkHeader(`${h.base}${upload}`, 'PUT', 'uploader', 'uploader-token');
      expect(unhashed).not.toMatch(/ hash="/);
      const r = await send('PUT', upload, { authorization: unhashed, 'content-type': 'application/json' }, JSON.stringify(good));
      expect([r.status, r.body['uploadMethod']]).toEqual([200, {}]);
    });
  });

  describe('the JSON body limit (1 MiB)', () => {
    /** A createUpload body of exactly `size` bytes (its padding is an unknown key: refused by validation if it gets that far). */
    const bodyOfSize = (size: number) => {
      const base = JSON.stringify({ projectId: 'proj/a', uploadId: slugid(), expires, proposedUploadMethods: {}, padding: '' });
      return base.replace('"padding":""', `"padding":"${'x'.repeat(size - base.length)}"`);
    };
    const put = (body: string | string[], chunked = false) =>
      send('PUT', '/api/object/v1/upload/n1', { authorization: 'Bearer uploader-token', 'content-type': 'application/json' }, body, {
        chunked,
      });
    const tooLarge = (r: Answer) =>
      expect([r.status, r.body]).toEqual([
        413,
        { code: 'InputTooLarge', message: expect.stringMatching(/larger than the 1048576 bytes allowed/) },
      ]);

    it('answers a body past 1 MiB with 413 InputTooLarge, as Taskcluster, announced by its length or not', async () => {
      expect(Buffer.byteLength(bodyOfSize(1048576))).toBe(1048576);
      // up to the limit the body is read, and validated
      const atLimit = await put(bodyOfSize(1048576));
      expect([atLimit.status, atLimit.body['code']]).toEqual([400, 'InputValidationError']);
      tooLarge(await put(bodyOfSize(1048577)));
      tooLarge(await put(bodyOfSize(1100 * 1024)));
      const huge = bodyOfSize(2 * 1048576);
      tooLarge(await put([huge.slice(0, 1000), huge.slice(1000)], true));
    });
  });
});
