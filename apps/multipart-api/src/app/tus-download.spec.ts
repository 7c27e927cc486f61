import { UrlSigner } from '@ferry/auth';
import { patternBytes, sha256Hex } from '@ferry/testing';
import { MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const SIGNING_KEY = 'tus-download-signing-key-0123456789';
const CLIENTS = [
  { clientId: 'bob', accessToken: 'bob-token', scopes: ['ferry:write:*'] },
  { clientId: 'carol', accessToken: 'carol-token', scopes: ['ferry:read:tus/*'] },
  { clientId: 'dave', accessToken: 'dave-token', scopes: ['ferry:write:tus/*'] },
  { clientId: 'alice', accessToken: 'alice-token', scopes: ['ferry:write:fileHandle/*', 'ferry:read:fileHandle/*'] },
];
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
const b64 = (s: string) => Buffer.from(s).toString('base64');

async function errorOf(r: Response): Promise<{ code: string; message: string }> {
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  return (await r.json()) as { code: string; message: string };
}

describe('downloads of finished tus uploads: GET /files/{id} and /files/{id}/url (HTTP, Redis, disk)', () => {
  let h: MultipartHarness;
  const data = patternBytes(300_000, 7);
  let id: string;

  /** A tus upload by bob (creation-with-upload): finished when `body` is its whole length. */
  async function create(body: Buffer, length = body.length, filename = 'report 2026 ü.pdf'): Promise<string> {
    const r = await fetch(`${h.base}/files/`, {
      method: 'POST',
      headers: {
        ...bearer('bob-token'),
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(length),
        'Upload-Metadata': `filename ${b64(filename)},filetype ${b64('application/pdf')}`,
        'Content-Type': 'application/offset+octet-stream',
      },
      body,
    });
    expect(r.status).toBe(201);
    expect(r.headers.get('upload-offset')).toBe(String(body.length));
    return (r.headers.get('location') ?? '').split('/').pop() ?? '';
  }

  async function signedUrl(uploadId: string, token = 'bob-token'): Promise<string> {
    const r = await fetch(`${h.base}/files/${uploadId}/url?redirect=false`, { headers: bearer(token) });
    expect([r.status, r.headers.get('content-type')]).toEqual([200, 'text/plain; charset=utf-8']);
    return r.text();
  }

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_CLIENTS: JSON.stringify(CLIENTS), FERRY_SIGNING_KEY: SIGNING_KEY }, false);
    id = await create(data);
  });

  afterAll(async () => {
    await h.close();
  });

  it('streams the finished upload to its uploader by bearer, with its type, name and sha256 ETag', async () => {
    const r = await fetch(`${h.base}/files/${id}`, { headers: bearer('bob-token') });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/pdf');
    expect(r.headers.get('content-length')).toBe(String(data.length));
    expect(r.headers.get('accept-ranges')).toBe('bytes');
    expect(r.headers.get('etag')).toBe(`"${sha256Hex(data)}"`);
    expect(r.headers.get('content-disposition')).toBe(`attachment; filename*=UTF-8''${encodeURIComponent('report 2026 ü.pdf')}`);
    expect(sha256Hex(Buffer.from(await r.arrayBuffer()))).toBe(sha256Hex(data));
  });

  it('lets a reader with ferry:read:tus/* download, refuses other writers and other scopes, and asks for credentials', async () => {
    const carol = await fetch(`${h.base}/files/${id}`, { headers: bearer('carol-token') });
    expect(carol.status).toBe(200);
    expect(Buffer.from(await carol.arrayBuffer()).equals(data)).toBe(true);
    const dave = await fetch(`${h.base}/files/${id}`, { headers: bearer('dave-token') }); // may write tus/*, but it is bob's
    expect([dave.status, (await errorOf(dave)).code]).toEqual([403, 'PERMISSION_DENIED']);
    const alice = await fetch(`${h.base}/files/${id}/url`, { headers: bearer('alice-token') });
    expect([alice.status, (await errorOf(alice)).code]).toEqual([403, 'PERMISSION_DENIED']);
    const nobody = await fetch(`${h.base}/files/${id}`);
    expect([nobody.status, (await errorOf(nobody)).code]).toEqual([401, 'UNAUTHENTICATED']);
  });

  it('answers a single Range with 206 and Content-Range, a suffix range too, and 416 past the end', async () => {
    const r = await fetch(`${h.base}/files/${id}`, { headers: { ...bearer('bob-token'), Range: 'bytes=1000-1999' } });
    expect(r.status).toBe(206);
    expect(r.headers.get('content-range')).toBe(`bytes 1000-1999/${data.length}`);
    expect(r.headers.get('content-length')).toBe('1000');
    expect(Buffer.from(await r.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true);
    const tail = await fetch(`${h.base}/files/${id}`, { headers: { ...bearer('bob-token'), Range: 'bytes=-10' } });
    expect([tail.status, tail.headers.get('content-range')]).toEqual([206, `bytes ${data.length - 10}-${data.length - 1}/${data.length}`]);
    expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(data.length - 10))).toBe(true);
    const past = await fetch(`${h.base}/files/${id}`, { headers: { ...bearer('bob-token'), Range: `bytes=${data.length}-` } });
    expect([past.status, (await errorOf(past)).code]).toEqual([416, 'OUT_OF_RANGE']);
  });

  it('answers a signed URL (text with redirect=false, else 307) that downloads without credentials, ranges included', async () => {
    const url = await signedUrl(id);
    expect(url).toMatch(new RegExp(`^${h.base}/files/${id}\\?X-Ferry-Expires=\\d+&X-Ferry-SignedHeaders=&X-Ferry-Signature=`));
    const r = await fetch(url);
    expect(r.status).toBe(200);
    expect(r.headers.get('etag')).toBe(`"${sha256Hex(data)}"`);
    expect(sha256Hex(Buffer.from(await r.arrayBuffer()))).toBe(sha256Hex(data));
    const part = await fetch(url, { headers: { Range: 'bytes=5-9' } });
    expect([part.status, part.headers.get('content-range')]).toEqual([206, `bytes 5-9/${data.length}`]);
    expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(5, 10))).toBe(true);
    const redirect = await fetch(`${h.base}/files/${id}/url`, { headers: bearer('carol-token'), redirect: 'manual' });
    expect(redirect.status).toBe(307);
    const followed = await fetch(redirect.headers.get('location') ?? '');
    expect(Buffer.from(await followed.arrayBuffer()).equals(data)).toBe(true);
  });

  it('refuses a tampered or expired signed URL with 403, and one signed for another upload', async () => {
    const url = new URL(await signedUrl(id));
    const signature = url.searchParams.get('X-Ferry-Signature') ?? '';
    const tampered = new URL(url);
    tampered.searchParams.set('X-Ferry-Signature', (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1));
    const longer = new URL(url);
    longer.searchParams.set('X-Ferry-Expires', String(Number(url.searchParams.get('X-Ferry-Expires')) + 3600));
    const other = await create(patternBytes(1000, 9));
    const elsewhere = new URL(url);
    elsewhere.pathname = `/files/${other}`;
    for (const bad of [tampered, longer, elsewhere]) {
      // a bearer token beside it does not rescue a bad signature
      const r = await fetch(bad, { headers: bearer('bob-token') });
      const e = await errorOf(r);
      expect([r.status, e.code, e.message]).toEqual([403, 'PERMISSION_DENIED', expect.stringMatching(/signature does not match/)]);
    }
    const path = `/files/${id}`;
    const expired = new UrlSigner(SIGNING_KEY).sign({ method: 'GET', path, expiresAt: Math.floor(Date.now() / 1000) - 5 });
    const r = await fetch(`${h.base}${path}?${expired}`);
    const e = await errorOf(r);
    expect([r.status, e.code, e.message]).toEqual([403, 'PERMISSION_DENIED', expect.stringMatching(/expired/)]);
    const forged = new UrlSigner('another-signing-key-0123456789abcdef').sign({ method: 'GET', path, expiresAt: 2_000_000_000 });
    expect((await fetch(`${h.base}${path}?${forged}`)).status).toBe(403);
  });

  it('answers 404 JSON for an unfinished upload (even with a valid signature), an unknown one and a malformed id', async () => {
    const unfinished = await create(data.subarray(0, 1000), data.length);
    const head = await fetch(`${h.base}/files/${unfinished}`, {
      method: 'HEAD',
      headers: { ...bearer('bob-token'), 'Tus-Resumable': '1.0.0' },
    });
    expect([head.status, head.headers.get('upload-offset')]).toEqual([200, '1000']); // HEAD stays tus's
    for (const path of [`/files/${unfinished}`, `/files/${unfinished}/url`, '/files/AAAAAAAAAAAAAAAAAAAAAA', '/files/not-an-id']) {
      const r = await fetch(`${h.base}${path}`, { headers: bearer('bob-token') });
      const e = await errorOf(r);
      expect([path, r.status, e.code]).toEqual([path, 404, 'NOT_FOUND']);
      expect(e.message).toMatch(/no finished tus upload/);
    }
    const path = `/files/${unfinished}`;
    const signed = new UrlSigner(SIGNING_KEY).sign({ method: 'GET', path, expiresAt: Math.floor(Date.now() / 1000) + 60 });
    const r = await fetch(`${h.base}${path}?${signed}`);
    expect([r.status, (await errorOf(r)).code]).toEqual([404, 'NOT_FOUND']);
  });

  it('downloads an empty upload (Upload-Length 0) as 200 with no bytes', async () => {
    const empty = await create(Buffer.alloc(0));
    const r = await fetch(await signedUrl(empty));
    expect([r.status, r.headers.get('content-length'), r.headers.get('etag')]).toEqual([200, '0', `"${sha256Hex(Buffer.alloc(0))}"`]);
    expect((await r.arrayBuffer()).byteLength).toBe(0);
  });
});
