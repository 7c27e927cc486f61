import type { IncomingHttpHeaders } from 'node:http';
import { type HttpAnswer, request, sha256Hex } from '@ferry/testing';
import { ObjectHarness, startObjectApi } from '../testing/object.harness';

const APP = 'https://tools.example.org';
const EVIL = 'https://evil.example.net';
const expires = new Date(Date.now() + 86_400_000).toISOString();
const enc = encodeURIComponent;

/** The Access-Control-* headers of an answer (lowercase names). */
function cors(headers: IncomingHttpHeaders): Record<string, string | string[] | undefined> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('access-control-')));
}

function list(value: string | string[] | undefined): string[] {
  return String(value ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '');
}

function preflight(url: string, origin: string, method: string, headers: string[]): Promise<HttpAnswer> {
  return request(url, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers.join(',') },
  });
}

function expectGranted(a: HttpAnswer, origin: string, mustExpose: string[] = []): void {
  expect(a.headers['access-control-allow-origin']).toBe(origin);
  for (const h of mustExpose) expect(list(a.headers['access-control-expose-headers'])).toContain(h.toLowerCase());
}

/** A Taskcluster API call as browser code makes it: Origin, Bearer token, JSON body. */
async function api(h: ObjectHarness, method: string, path: string, body?: unknown, origin = APP) {
  const a = await request(`${h.base}/api/object/v1${path}`, {
    method,
    headers: {
      Origin: origin,
      Authorization: 'Bearer uploader-token',
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
  });
  return { ...a, json: a.body.length ? (JSON.parse(a.body.toString()) as Record<string, unknown>) : {} };
}

describe('CORS on object-api with FERRY_CORS_ORIGINS (real HTTP, Redis, disk)', () => {
  let h: ObjectHarness;

  beforeAll(async () => {
    h = await startObjectApi({ FERRY_CORS_ORIGINS: APP });
  });

  afterAll(async () => {
    await h.close();
  });

  it('grants the JSON API, its errors, the putUrl PUT and the getUrl download to an allowed origin', async () => {
    const name = 'cors/object.bin';
    const data = Buffer.from('bytes from a browser page');
    // the API is called with Authorization and a JSON body: preflighted
    const asked = await preflight(`${h.base}/api/object/v1/upload/${enc(name)}`, APP, 'PUT', ['authorization', 'content-type']);
    expect([asked.status, asked.headers['access-control-allow-origin']]).toEqual([204, APP]);
    expect(list(asked.headers['access-control-allow-headers'])).toEqual(expect.arrayContaining(['authorization', 'content-type']));
    expect((await preflight(`${h.base}/api/object/v1/upload/${enc(name)}`, EVIL, 'PUT', ['authorization'])).status).toBe(403);

    const uploadId = 'c0rsc0rsTJ2bbfdhiW8TFA';
    const created = await api(h, 'PUT', `/upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      expires,
      proposedUploadMethods: { putUrl: { contentType: 'application/x-thing', contentLength: data.length } },
    });
    expect(created.status).toBe(200);
    expectGranted(created, APP);
    const put = (created.json['uploadMethod'] as { putUrl: { url: string; headers: Record<string, string> } }).putUrl;

    // the data plane: a signed PUT with its Content-Type (not a simple request: preflighted)
    const putAsked = await preflight(put.url, APP, 'PUT', ['content-type']);
    expect([putAsked.status, putAsked.headers['access-control-allow-origin']]).toEqual([204, APP]);
    expect((await preflight(put.url, EVIL, 'PUT', ['content-type'])).status).toBe(403);
    const { 'Content-Length': _length, ...headers } = put.headers; // a browser sets Content-Length itself
    const stored = await request(put.url, { method: 'PUT', headers: { Origin: APP, ...headers }, body: data });
    expect(stored.status).toBe(200);
    expectGranted(stored, APP);
    // a PUT whose signed Content-Type differs is refused, readably
    const wrongType = await request(put.url, { method: 'PUT', headers: { Origin: APP, 'Content-Type': 'text/plain' }, body: data });
    expect(wrongType.status).toBe(403);
    expectGranted(wrongType, APP);

    expect(
      (await api(h, 'POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } })).status,
    ).toBe(200);
    const download = await api(h, 'PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: { getUrl: true } });
    expectGranted(download, APP);
    const url = String(download.json['url']);
    expect(url).toContain('/data/objects/');
    expect((await preflight(url, APP, 'GET', ['range'])).status).toBe(204);
    const ranged = await request(url, { headers: { Origin: APP, Range: 'bytes=0-4' } });
    expect([ranged.status, ranged.body.toString()]).toEqual([206, 'bytes']);
    expectGranted(ranged, APP, ['Content-Range', 'ETag', 'Accept-Ranges', 'Content-Length']);

    // Taskcluster errors: unknown object (404), a body that is not JSON (400), both readable
    const missing = await api(h, 'GET', `/metadata/${enc('cors/none')}`);
    expect([missing.status, missing.json['code']]).toEqual([404, 'ResourceNotFound']);
    expectGranted(missing, APP);
    const garbled = await request(`${h.base}/api/object/v1/upload/x`, {
      method: 'PUT',
      headers: { Origin: APP, Authorization: 'Bearer uploader-token', 'Content-Type': 'application/json' },
      body: Buffer.from('{nope'),
    });
    expect(garbled.status).toBe(400);
    expectGranted(garbled, APP);
    expect(JSON.parse(garbled.body.toString())).toMatchObject({ code: expect.any(String), message: expect.any(String) });

    // another origin is served as before (CORS is not authorization), without a grant
    const other = await api(h, 'GET', `/metadata/${enc(name)}`, undefined, EVIL);
    expect(other.status).toBe(200);
    expect(cors(other.headers)).toEqual({});
    expect(list(other.headers['vary'])).toContain('origin');
  });
});

describe('CORS on object-api without FERRY_CORS_ORIGINS', () => {
  let h: ObjectHarness;

  beforeAll(async () => {
    h = await startObjectApi();
  });

  afterAll(async () => {
    await h.close();
  });

  it('is off: preflights are not answered with a grant, answers carry no Access-Control-* header', async () => {
    const asked = await preflight(`${h.base}/data/uploads/x/y?X-Ferry-Signature=x`, APP, 'PUT', ['content-type']);
    expect(asked.status).not.toBe(204);
    expect(cors(asked.headers)).toEqual({});
    const ping = await api(h, 'GET', '/ping');
    expect(ping.status).toBe(200);
    expect(cors(ping.headers)).toEqual({});
    expect(ping.headers['vary']).toBeUndefined();
  });
});
