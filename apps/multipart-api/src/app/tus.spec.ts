import { request as httpRequest, type ClientRequest } from 'node:http';
import { Upload, type PreviousUpload, type UrlStorage } from 'tus-js-client';
import { UploadEngine } from '@ferry/uploads';
import { patternBytes, sha256Hex, waitFor } from '@ferry/testing';
import { MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const MiB = 1024 * 1024;
const TOKEN = 'bob-token-1'; // ferry:write:*
const MAX = 64 * MiB;

/** tus-js-client's URL storage, in memory (as a browser's localStorage would keep it). */
class MemoryUrlStorage implements UrlStorage {
  private readonly uploads = new Map<string, PreviousUpload & { urlStorageKey: string }>();
  private n = 0;
  async findAllUploads(): Promise<PreviousUpload[]> {
    return [...this.uploads.values()];
  }
  async findUploadsByFingerprint(fingerprint: string): Promise<PreviousUpload[]> {
    return [...this.uploads.entries()].filter(([k]) => k.startsWith(`${fingerprint}::`)).map(([, u]) => u);
  }
  async removeUpload(key: string): Promise<void> {
    this.uploads.delete(key);
  }
  async addUpload(fingerprint: string, upload: PreviousUpload): Promise<string> {
    const key = `${fingerprint}::${this.n++}`;
    this.uploads.set(key, { ...upload, urlStorageKey: key });
    return key;
  }
}

/** An error answer's JSON body. */
async function body(r: Response): Promise<{ code: string; message: string }> {
  return (await r.json()) as { code: string; message: string };
}

describe('tus 1.0.0 on multipart-api (real tus-js-client, HTTP, Redis, disk)', () => {
  let h: MultipartHarness;
  let files: string;
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const tus = { 'Tus-Resumable': '1.0.0', ...auth };

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_TUS_MAX_SIZE: String(MAX), FERRY_FSYNC_BYTES: String(MiB) }, false);
    files = `${h.base}/files/`;
  });

  afterAll(async () => {
    await h.close();
  });

  function upload(data: Buffer, options: Partial<ConstructorParameters<typeof Upload>[1]>): { upload: Upload; done: Promise<string> } {
    let upload!: Upload;
    const done = new Promise<string>((resolve, reject) => {
      upload = new Upload(data, {
        endpoint: files,
        headers: auth,
        retryDelays: [],
        metadata: { filename: 'photo.jpg', filetype: 'image/jpeg' },
        ...options,
        onSuccess: () => resolve(upload.url as string),
        onError: reject,
      });
    });
    return { upload, done };
  }

  async function object(
    url: string,
  ): Promise<{ sha256: string; size: number; bytes: Buffer; contentType: string; metadata?: Record<string, string> }> {
    const engine = h.app.get(UploadEngine);
    const name = `tus/${url.split('/').pop()}`;
    const o = await engine.object(name);
    if (!o) throw new Error(`no object ${name}`);
    const chunks: Buffer[] = [];
    for await (const c of engine.readBlob(o.blob, 0, o.size)) chunks.push(c as Buffer);
    return { sha256: o.sha256, size: o.size, bytes: Buffer.concat(chunks), contentType: o.contentType, metadata: o.metadata };
  }

  it('answers OPTIONS with its version, extensions, limits and checksum algorithms', async () => {
    const r = await fetch(files, { method: 'OPTIONS' });
    expect(r.status).toBe(204);
    expect(r.headers.get('tus-version')).toBe('1.0.0');
    expect(r.headers.get('tus-extension')).toBe('creation,creation-with-upload,creation-defer-length,expiration,checksum,termination');
    expect(r.headers.get('tus-max-size')).toBe(String(MAX));
    expect(r.headers.get('tus-checksum-algorithm')).toBe('sha1,md5,crc32,sha256');
  });

  it('uploads a file with tus-js-client in chunks and publishes tus/{id} with its sha256, type and filename', async () => {
    const data = patternBytes(3 * MiB + 123, 3);
    const { upload: u, done } = upload(data, { chunkSize: MiB });
    u.start();
    const url = await done;
    expect(url).toMatch(/\/files\/[A-Za-z0-9_-]{22}$/);
    const o = await object(url);
    expect([o.size, o.sha256, o.contentType]).toEqual([data.length, sha256Hex(data), 'image/jpeg']);
    expect(o.bytes.equals(data)).toBe(true);
    expect(o.metadata).toEqual({ filename: 'photo.jpg', filetype: 'image/jpeg' });
    const head = await fetch(url, { method: 'HEAD', headers: tus });
    expect([head.status, head.headers.get('upload-offset'), head.headers.get('upload-length')]).toEqual([
      200,
      String(data.length),
      String(data.length),
    ]);
  });

  it('resumes an upload aborted half way in a new Upload, from the offset the server kept', async () => {
    const data = patternBytes(8 * MiB, 5);
    const urlStorage = new MemoryUrlStorage();
    const common = { urlStorage, fingerprint: async () => 'file-1', storeFingerprintForResuming: true };
    let aborted!: () => void;
    const abortedAt = new Promise<void>((r) => (aborted = r));
    const first = upload(data, {
      ...common,
      chunkSize: MiB, // several PATCHes: the abort lands before the last
      onProgress: (sent) => {
        if (sent >= 4 * MiB) void first.upload.abort().then(aborted);
      },
    });
    first.upload.start();
    await abortedAt;
    const url = first.upload.url as string;
    let offset = 0;
    await waitFor('the aborted PATCH to leave its bytes', async () => {
      const head = await fetch(url, { method: 'HEAD', headers: tus });
      offset = Number(head.headers.get('upload-offset'));
      return head.status === 200 && offset > 0;
    });
    expect(offset).toBeLessThan(data.length);
    const second = upload(data, common);
    const previous = await second.upload.findPreviousUploads();
    expect(previous).toHaveLength(1);
    second.upload.resumeFromPreviousUpload(previous[0]);
    let resumedFrom = -1;
    second.upload.options.onProgress = (sent) => {
      if (resumedFrom < 0) resumedFrom = sent;
    };
    second.upload.start();
    expect(await second.done).toBe(url);
    expect(resumedFrom).toBeGreaterThanOrEqual(offset); // it did not start again from 0
    const o = await object(url);
    expect([o.size, o.sha256]).toEqual([data.length, sha256Hex(data)]);
  });

  async function create(length: number | 'defer', extra: Record<string, string> = {}): Promise<string> {
    const r = await fetch(files, {
      method: 'POST',
      headers: { ...tus, ...(length === 'defer' ? { 'Upload-Defer-Length': '1' } : { 'Upload-Length': String(length) }), ...extra },
    });
    expect(r.status).toBe(201);
    expect(r.headers.get('upload-expires')).toBeTruthy();
    return r.headers.get('location') as string;
  }

  function patch(url: string, offset: number, body: Buffer, extra: Record<string, string> = {}): Promise<Response> {
    return fetch(url, {
      method: 'PATCH',
      headers: { ...tus, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset), ...extra },
      body,
    });
  }

  it('discards a chunk whose Upload-Checksum does not match (460) and accepts it with the right one', async () => {
    const data = patternBytes(2 * MiB, 9);
    const url = await create(data.length);
    const first = data.subarray(0, MiB);
    const wrong = await patch(url, 0, first, { 'Upload-Checksum': `sha1 ${Buffer.alloc(20).toString('base64')}` });
    expect(wrong.status).toBe(460);
    expect((await body(wrong)).code).toBe('INVALID_ARGUMENT');
    expect((await fetch(url, { method: 'HEAD', headers: tus })).headers.get('upload-offset')).toBe('0');
    const { createHash } = await import('node:crypto');
    const { crc32 } = await import('node:zlib');
    const ok = await patch(url, 0, first, { 'Upload-Checksum': `sha256 ${createHash('sha256').update(first).digest('base64')}` });
    expect([ok.status, ok.headers.get('upload-offset')]).toEqual([204, String(MiB)]);
    const rest = data.subarray(MiB);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(rest));
    const last = await patch(url, MiB, rest, { 'Upload-Checksum': `crc32 ${crc.toString('base64')}` });
    expect([last.status, last.headers.get('upload-offset')]).toEqual([204, String(data.length)]);
    expect((await object(url)).sha256).toBe(sha256Hex(data));
  });

  it('creates with upload, defers the length, and terminates: DELETE 204 and nothing left', async () => {
    const data = patternBytes(100_000, 2);
    const r = await fetch(files, {
      method: 'POST',
      headers: { ...tus, 'Upload-Defer-Length': '1', 'Content-Type': 'application/offset+octet-stream' },
      body: data.subarray(0, 40_000),
    });
    expect([r.status, r.headers.get('upload-offset')]).toEqual([201, '40000']);
    const url = r.headers.get('location') as string;
    const head = await fetch(url, { method: 'HEAD', headers: tus });
    expect([head.headers.get('upload-defer-length'), head.headers.get('cache-control')]).toEqual(['1', 'no-store']);
    const del = await fetch(url, { method: 'DELETE', headers: tus });
    expect(del.status).toBe(204);
    expect((await fetch(url, { method: 'HEAD', headers: tus })).status).toBe(404);
    expect((await patch(url, 40_000, data.subarray(40_000))).status).toBe(404);
    expect(h.storage).toBeDefined();
    // with the length given on a later PATCH, a deferred upload finishes
    const url2 = await create('defer');
    const p = await patch(url2, 0, data, { 'Upload-Length': String(data.length) });
    expect([p.status, p.headers.get('upload-offset')]).toEqual([204, String(data.length)]);
    expect((await object(url2)).sha256).toBe(sha256Hex(data));
  });

  it('refuses bad input with its status and a JSON body, publishing nothing', async () => {
    const url = await create(1000, { 'Upload-Metadata': `filename ${Buffer.from('a.txt').toString('base64')}` });
    const none = await fetch(url, { method: 'HEAD', headers: auth });
    expect([none.status, none.headers.get('tus-version')]).toEqual([412, '1.0.0']);
    const old = await fetch(files, { method: 'POST', headers: { ...auth, 'Tus-Resumable': '0.2.2', 'Upload-Length': '5' } });
    expect([old.status, (await body(old)).code]).toEqual([412, 'FAILED_PRECONDITION']);
    const mismatch = await patch(url, 10, Buffer.alloc(10));
    expect([mismatch.status, (await body(mismatch)).code]).toEqual([409, 'FAILED_PRECONDITION']);
    const type = await patch(url, 0, Buffer.alloc(10), { 'Content-Type': 'application/octet-stream' });
    expect(type.status).toBe(415);
    expect((await body(type)).message).toMatch(/offset\+octet-stream/);
    const big = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Length': String(MAX + 1) } });
    expect([big.status, (await body(big)).code]).toEqual([413, 'OUT_OF_RANGE']);
    const past = await patch(url, 0, Buffer.alloc(1001));
    expect(past.status).toBe(413);
    const meta = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Length': '5', 'Upload-Metadata': 'filename a b c' } });
    expect([meta.status, (await body(meta)).code]).toEqual([400, 'INVALID_ARGUMENT']);
    const noAuth = await fetch(files, { method: 'POST', headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '5' } });
    expect(noAuth.status).toBe(401);
    const readOnly = await fetch(files, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', Authorization: 'Bearer carol-token', 'Upload-Length': '5' },
    });
    expect(readOnly.status).toBe(403);
    expect(await h.app.get(UploadEngine).object(`tus/${url.split('/').pop()}`)).toBeUndefined();
    const head = await fetch(url, { method: 'HEAD', headers: tus });
    expect(head.headers.get('upload-offset')).toBe('0');
  });

  it('a new request makes a stale PATCH still holding the upload let go (tusd lock release), on the shared session', async () => {
    const data = patternBytes(2 * MiB, 4);
    const url = await create(data.length);
    const stale: ClientRequest = httpRequest(url, {
      method: 'PATCH',
      headers: { ...tus, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0', 'Content-Length': String(data.length) },
    });
    stale.on('error', () => undefined);
    stale.write(data.subarray(0, MiB)); // half, then silence: a client whose network went away
    await waitFor('the stale PATCH to hold the upload', async () => {
      const head = await fetch(url, { method: 'HEAD', headers: tus }).catch(() => undefined);
      return head !== undefined && Number(head.headers.get('upload-offset')) === MiB;
    });
    // the HEAD above made it let go with its bytes kept; a PATCH continues from there
    const rest = await patch(url, MiB, data.subarray(MiB));
    expect([rest.status, rest.headers.get('upload-offset')]).toEqual([204, String(data.length)]);
    stale.destroy();
    expect((await object(url)).sha256).toBe(sha256Hex(data));
  });
});
