import type { IncomingHttpHeaders } from 'node:http';
import { type HttpAnswer, MultipartClient, md5Hex, request } from '@ferry/testing';
import { CORS_ALLOWED_HEADERS, CORS_MAX_AGE_SECONDS } from '@ferry/http';
import { MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const APP = 'https://app.example.com';
const DEV = 'http://localhost:5173';
const EVIL = 'https://evil.example.net';
const TOKEN = 'bob-token-1'; // ferry:write:*
const auth = { Authorization: `Bearer ${TOKEN}` };
const tus = { 'Tus-Resumable': '1.0.0', ...auth };

/** The Access-Control-* headers of an answer (lowercase names). */
function cors(headers: IncomingHttpHeaders): Record<string, string | string[] | undefined> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('access-control-')));
}

/** A comma-separated header as a lowercase list. */
function list(value: string | string[] | undefined): string[] {
  return String(value ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '');
}

/** What a browser sends before a cross-origin request it may not send as is. */
function preflight(url: string, origin: string, method: string, headers: string[]): Promise<HttpAnswer> {
  return request(url, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers.join(',') },
  });
}

/** The grant a browser needs on an actual (non-preflight) answer, for `origin`. */
function expectGranted(a: HttpAnswer, origin: string, mustExpose: string[] = []): void {
  expect(a.headers['access-control-allow-origin']).toBe(origin);
  const exposed = list(a.headers['access-control-expose-headers']);
  for (const h of mustExpose) expect(exposed).toContain(h.toLowerCase());
  expect(a.headers['access-control-allow-credentials']).toBeUndefined();
}

describe('CORS on multipart-api with FERRY_CORS_ORIGINS listing origins (real HTTP, Redis, disk)', () => {
  let h: MultipartHarness;
  let files: string;

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_CORS_ORIGINS: `${APP}, ${DEV}/` }, false);
    files = `${h.base}/files/`;
  });

  afterAll(async () => {
    await h.close();
  });

  it('grants a tus preflight from an allowed origin before the tus controller, and refuses other origins', async () => {
    const asked = ['authorization', 'tus-resumable', 'upload-length', 'upload-metadata', 'x-http-method-override'];
    const ok = await preflight(files, APP, 'POST', asked);
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe(APP);
    expect(list(ok.headers['access-control-allow-methods'])).toEqual(['get', 'head', 'post', 'put', 'patch', 'delete', 'options']);
    for (const a of asked) expect(list(ok.headers['access-control-allow-headers'])).toContain(a);
    expect(ok.headers['access-control-max-age']).toBe(String(CORS_MAX_AGE_SECONDS));
    expect(list(ok.headers['vary'])).toContain('origin');
    expect(ok.headers['tus-version']).toBeUndefined(); // answered by the middleware, not by the tus OPTIONS route

    // the origin is compared as browsers serialize it (the configured trailing slash is gone)
    const dev = await preflight(`${files}some-id`, DEV, 'PATCH', ['upload-offset', 'content-type', 'tus-resumable']);
    expect([dev.status, dev.headers['access-control-allow-origin']]).toEqual([204, DEV]);

    for (const origin of [EVIL, 'https://app.example.com.evil.example.net', 'http://app.example.com', 'null']) {
      const refused = await preflight(`${files}some-id`, origin, 'PATCH', ['upload-offset']);
      expect(refused.status).toBe(403);
      expect(cors(refused.headers)).toEqual({});
      expect(list(refused.headers['vary'])).toContain('origin');
    }
  });

  it('lets a plain OPTIONS (tus discovery) reach the tus route, with the grant for an allowed origin only', async () => {
    const discovery = await request(files, { method: 'OPTIONS', headers: { Origin: APP } });
    expect(discovery.status).toBe(204);
    expect(discovery.headers['tus-version']).toBe('1.0.0');
    expect(discovery.headers['tus-max-size']).toBeDefined();
    expectGranted(discovery, APP, ['Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Tus-Checksum-Algorithm']);

    const other = await request(files, { method: 'OPTIONS', headers: { Origin: EVIL } });
    expect([other.status, other.headers['tus-version']]).toEqual([204, '1.0.0']);
    expect(cors(other.headers)).toEqual({});
    const none = await request(files, { method: 'OPTIONS' });
    expect(cors(none.headers)).toEqual({});
    expect(list(none.headers['vary'])).toContain('origin');
  });

  it('grants every answer of a tus upload to an allowed origin, PATCH sent as POST with X-HTTP-Method-Override included', async () => {
    const origin = { Origin: APP };
    const created = await request(files, { method: 'POST', headers: { ...origin, ...tus, 'Upload-Length': 10 } });
    expect(created.status).toBe(201);
    expectGranted(created, APP, ['Location', 'Upload-Expires', 'Tus-Resumable']);
    const url = String(created.headers['location']);

    const first = await request(url, {
      method: 'POST',
      headers: {
        ...origin,
        ...tus,
        'X-HTTP-Method-Override': 'PATCH',
        'Upload-Offset': 0,
        'Content-Type': 'application/offset+octet-stream',
      },
      body: Buffer.from('hello'),
    });
    expect([first.status, first.headers['upload-offset']]).toEqual([204, '5']);
    expectGranted(first, APP, ['Upload-Offset']);

    const head = await request(url, { method: 'HEAD', headers: { ...origin, ...tus } });
    expect([head.status, head.headers['upload-offset'], head.headers['upload-length']]).toEqual([200, '5', '10']);
    expectGranted(head, APP, ['Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Upload-Defer-Length']);

    const rest = await request(url, {
      method: 'PATCH',
      headers: { ...origin, ...tus, 'Upload-Offset': 5, 'Content-Type': 'application/offset+octet-stream' },
      body: Buffer.from('world'),
    });
    expect([rest.status, rest.headers['upload-offset']]).toEqual([204, '10']);
    expectGranted(rest, APP);

    // an override that names no method tus has is refused, with the grant
    const bad = await request(url, { method: 'POST', headers: { ...origin, ...tus, 'X-HTTP-Method-Override': 'GET' } });
    expect(bad.status).toBe(400);
    expectGranted(bad, APP);

    // DELETE through the override: the upload is finished, so tus says 409 (it was routed as DELETE)
    const del = await request(url, { method: 'POST', headers: { ...origin, ...tus, 'X-HTTP-Method-Override': 'delete' } });
    expect(del.status).toBe(409);
    expectGranted(del, APP);
  });

  it('grants error answers too, so browser code can read {code, message}', async () => {
    const origin = { Origin: APP };
    // tus: no Tus-Resumable (412), an unknown upload (404)
    const noVersion = await request(files, { method: 'POST', headers: { ...origin, ...auth, 'Upload-Length': 1 } });
    expect(noVersion.status).toBe(412);
    expectGranted(noVersion, APP, ['Tus-Version']);
    expect(JSON.parse(noVersion.body.toString())).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    const missing = await request(`${files}no-such-upload`, { method: 'HEAD', headers: { ...origin, ...tus } });
    expect(missing.status).toBe(404);
    expectGranted(missing, APP);
    // the JSON API: no credentials (401), a body that is not JSON (400 from the body parser), no such route (404)
    for (const [path, method, headers, body, status] of [
      ['/file/multipart', 'POST', { 'Content-Type': 'application/json' }, '{}', 401],
      ['/file/multipart', 'POST', { ...auth, 'Content-Type': 'application/json' }, '{not json', 400],
      ['/no/such/route', 'GET', auth, '', 404],
    ] as const) {
      const a = await request(`${h.base}${path}`, {
        method,
        headers: { ...origin, ...headers },
        body: body ? Buffer.from(body) : undefined,
      });
      expect([path, a.status]).toEqual([path, status]);
      expectGranted(a, APP);
      expect(JSON.parse(a.body.toString())).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
    // an origin not listed is not refused (CORS is not authorization), it just gets no grant
    const evil = await request(files, { method: 'POST', headers: { Origin: EVIL, ...auth, 'Upload-Length': 1 } });
    expect(evil.status).toBe(412);
    expect(cors(evil.headers)).toEqual({});
  });

  it('grants presigned part PUTs (ETag readable) and signed file handle downloads (Content-Range readable)', async () => {
    const client = new MultipartClient({ base: h.base, token: TOKEN });
    const content = Buffer.from('cross-origin part bytes');
    const start = await client.start({
      fileName: 'cors.bin',
      contentType: 'application/octet-stream',
      contentMD5Hex: md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: 5 * 1024 * 1024,
    });
    const uploadId = (start.body as { uploadId: string }).uploadId;
    const [u] = (await client.urls(uploadId, [1], { contentType: 'application/x-part' })).body.partPresignedUrls;

    // the browser asks first (Content-Type application/x-part is not a simple request), at the full signed URL
    const asked = await preflight(u.uploadPresignedUrl, DEV, 'PUT', ['content-type']);
    expect([asked.status, asked.headers['access-control-allow-origin']]).toEqual([204, DEV]);
    expect(list(asked.headers['access-control-allow-headers'])).toContain('content-type');
    expect((await preflight(u.uploadPresignedUrl, EVIL, 'PUT', ['content-type'])).status).toBe(403);

    const put = await request(u.uploadPresignedUrl, { method: 'PUT', headers: { Origin: DEV, ...u.signedHeaders }, body: content });
    expect(put.status).toBe(200);
    expect(put.headers['etag']).toBe(`"${md5Hex(content)}"`);
    expectGranted(put, DEV, ['ETag']);
    // a signature error on the data plane carries the grant too
    const forged = await request(u.uploadPresignedUrl.replace(/X-Ferry-Signature=[^&]+/, 'X-Ferry-Signature=AAAA'), {
      method: 'PUT',
      headers: { Origin: DEV, ...u.signedHeaders },
      body: content,
    });
    expect(forged.status).toBe(403);
    expectGranted(forged, DEV);

    expect((await client.add(uploadId, 1, md5Hex(content))).body).toMatchObject({ addPartState: 'ADD_SUCCESS' });
    const done = await client.complete(uploadId);
    expect(done.status).toBe(200);
    const handleId = (done.body as { resultFileHandleId: string }).resultFileHandleId;
    const link = String((await client.fileHandleUrl(handleId, false)).body);
    expect(link).toContain(`/fileHandle/${handleId}/content`);

    // a Range header may make a download preflighted (not safelisted by every browser)
    expect((await preflight(link, APP, 'GET', ['range'])).status).toBe(204);
    const ranged = await request(link, { headers: { Origin: APP, Range: 'bytes=0-4' } });
    expect([ranged.status, ranged.body.toString()]).toEqual([206, 'cross']);
    expectGranted(ranged, APP, ['Content-Range', 'Content-Length', 'Accept-Ranges', 'ETag', 'Content-Disposition']);
    const whole = await request(link, { headers: { Origin: APP } });
    expect(whole.body.equals(content)).toBe(true);
    expectGranted(whole, APP, ['Content-MD5']);
  });

  it('grants the headers tus-js-client and Uppy send', () => {
    const allowed = CORS_ALLOWED_HEADERS.map((x) => x.toLowerCase());
    for (const header of ['authorization', 'content-type', 'tus-resumable', 'upload-length', 'upload-offset', 'upload-metadata'])
      expect(allowed).toContain(header);
    for (const header of ['upload-defer-length', 'upload-concat', 'upload-checksum', 'x-http-method-override', 'x-request-id'])
      expect(allowed).toContain(header);
  });
});

describe('CORS on multipart-api with FERRY_CORS_ORIGINS=*', () => {
  let h: MultipartHarness;

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_CORS_ORIGINS: '*' }, false);
  });

  afterAll(async () => {
    await h.close();
  });

  it('grants any origin with *, on every answer, and varies on nothing', async () => {
    const ok = await preflight(`${h.base}/files/`, EVIL, 'POST', ['authorization', 'tus-resumable', 'upload-length']);
    expect([ok.status, ok.headers['access-control-allow-origin']]).toEqual([204, '*']);
    expect(ok.headers['vary']).toBeUndefined();
    const created = await request(`${h.base}/files/`, { method: 'POST', headers: { Origin: EVIL, ...tus, 'Upload-Length': 3 } });
    expect(created.status).toBe(201);
    expectGranted(created, '*', ['Location']);
    // the same answer whether or not the request names an origin: nothing for a cache to vary on
    const plain = await request(`${h.base}/no/such/route`);
    expect(plain.status).toBe(404);
    expectGranted(plain, '*');
    expect(plain.headers['vary']).toBeUndefined();
  });
});

describe('CORS on multipart-api without FERRY_CORS_ORIGINS', () => {
  let h: MultipartHarness;

  beforeAll(async () => {
    h = await startMultipartApi({}, false);
  });

  afterAll(async () => {
    await h.close();
  });

  it('is off: no Access-Control-* header anywhere, and preflights go to the routes ungranted', async () => {
    // the tus OPTIONS route answers it, as any OPTIONS: no grant, so the browser refuses
    const tusPreflight = await preflight(`${h.base}/files/`, APP, 'POST', ['authorization', 'tus-resumable']);
    expect([tusPreflight.status, tusPreflight.headers['tus-version']]).toEqual([204, '1.0.0']);
    expect(cors(tusPreflight.headers)).toEqual({});
    const partPreflight = await preflight(`${h.base}/file/multipart/x/parts/1?X-Ferry-Signature=x`, APP, 'PUT', ['content-type']);
    expect(cors(partPreflight.headers)).toEqual({});
    const created = await request(`${h.base}/files/`, { method: 'POST', headers: { Origin: APP, ...tus, 'Upload-Length': 3 } });
    expect(created.status).toBe(201);
    expect(cors(created.headers)).toEqual({});
    expect(created.headers['vary']).toBeUndefined();
    const error = await request(`${h.base}/files/`, { method: 'POST', headers: { Origin: APP, ...auth, 'Upload-Length': 3 } });
    expect(error.status).toBe(412);
    expect(cors(error.headers)).toEqual({});
  });
});
