import { request as httpRequest, type ClientRequest } from 'node:http';
import { Upload, type PreviousUpload, type UrlStorage } from 'tus-js-client';
import { REDIS, STORAGE } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { UploadEngine, UploadExpiry } from '@ferry/uploads';
import { patternBytes, sha256Hex, waitFor } from '@ferry/testing';
import { CLIENTS, MultipartHarness, startMultipartApi } from '../testing/multipart.harness';

const MiB = 1024 * 1024;
const TOKEN = 'bob-token-1'; // ferry:write:*
const MAX = 64 * MiB;
/** Another client allowed to write tus uploads (bob's partial uploads are not its). */
const DAVE = { clientId: 'dave', accessToken: 'dave-token', scopes: ['ferry:write:*'] };

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

/** An error answer: its status, and a JSON `{code, message}` body with this code and a message matching `message`. */
async function expectError(r: Response, status: number, code: string, message: RegExp): Promise<void> {
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  const b = await body(r);
  expect([r.status, b.code]).toEqual([status, code]);
  expect(b.message).toMatch(message);
  expect(Object.keys(b).sort()).toEqual(['code', 'message']);
}

describe('tus 1.0.0 on multipart-api (real tus-js-client, HTTP, Redis, disk)', () => {
  let h: MultipartHarness;
  let files: string;
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const tus = { 'Tus-Resumable': '1.0.0', ...auth };

  beforeAll(async () => {
    h = await startMultipartApi(
      { FERRY_TUS_MAX_SIZE: String(MAX), FERRY_FSYNC_BYTES: String(MiB), FERRY_CLIENTS: JSON.stringify([...CLIENTS, DAVE]) },
      false,
    );
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
    expect(r.headers.get('tus-extension')).toBe(
      'creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation',
    );
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

  /** Upload sessions in the expiry index (every upload created, of every face): a refused creation adds none. */
  async function uploadsIndexed(): Promise<number> {
    return h.app.get<Redis>(REDIS).zcard(h.app.get(RedisKeys).uploadsByActivity());
  }

  it('refuses bad input with its status and a JSON body, publishing nothing', async () => {
    const url = await create(1000, { 'Upload-Metadata': `filename ${Buffer.from('a.txt').toString('base64')}` });
    const indexed = await uploadsIndexed();
    const none = await fetch(url, { method: 'HEAD', headers: auth });
    expect([none.status, none.headers.get('tus-version')]).toEqual([412, '1.0.0']);
    const old = await fetch(files, { method: 'POST', headers: { ...auth, 'Tus-Resumable': '0.2.2', 'Upload-Length': '5' } });
    expect(old.headers.get('tus-version')).toBe('1.0.0');
    await expectError(old, 412, 'FAILED_PRECONDITION', /Tus-Resumable must be 1\.0\.0 \(got "0\.2\.2"\)/);
    const oldPatch = await patch(url, 0, Buffer.alloc(10), { 'Tus-Resumable': '2.0.0' });
    await expectError(oldPatch, 412, 'FAILED_PRECONDITION', /Tus-Resumable must be 1\.0\.0/);
    const mismatch = await patch(url, 10, Buffer.alloc(10));
    await expectError(mismatch, 409, 'FAILED_PRECONDITION', /Upload-Offset 10 is not the upload's offset 0/);
    const type = await patch(url, 0, Buffer.alloc(10), { 'Content-Type': 'application/octet-stream' });
    await expectError(type, 415, 'INVALID_ARGUMENT', /offset\+octet-stream/);
    const big = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Length': String(MAX + 1) } });
    await expectError(big, 413, 'OUT_OF_RANGE', /over Tus-Max-Size/);
    expect(big.headers.get('location')).toBeNull();
    const past = await patch(url, 0, Buffer.alloc(1001));
    await expectError(past, 413, 'OUT_OF_RANGE', /past Upload-Length 1000/);
    const meta = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Length': '5', 'Upload-Metadata': 'filename a b c' } });
    await expectError(meta, 400, 'INVALID_ARGUMENT', /Upload-Metadata: malformed pair/);
    const notBase64 = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Length': '5', 'Upload-Metadata': 'filename a$b!' } });
    await expectError(notBase64, 400, 'INVALID_ARGUMENT', /is not base64/);
    const noAuth = await fetch(files, { method: 'POST', headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '5' } });
    expect(noAuth.status).toBe(401);
    const readOnly = await fetch(files, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', Authorization: 'Bearer carol-token', 'Upload-Length': '5' },
    });
    expect(readOnly.status).toBe(403);
    // nothing was created by the refused POSTs, nothing written or published by the refused PATCHes
    expect(await uploadsIndexed()).toBe(indexed);
    expect(await h.app.get(UploadEngine).object(`tus/${url.split('/').pop()}`)).toBeUndefined();
    const head = await fetch(url, { method: 'HEAD', headers: tus });
    expect(head.headers.get('upload-offset')).toBe('0');
  });

  it('refuses to terminate a finished upload (409): it is the object tus/{id}', async () => {
    const data = patternBytes(1000, 6);
    const url = await create(data.length);
    expect((await patch(url, 0, data)).status).toBe(204);
    const del = await fetch(url, { method: 'DELETE', headers: tus });
    await expectError(del, 409, 'FAILED_PRECONDITION', /is finished: it is the object tus\//);
    expect((await object(url)).sha256).toBe(sha256Hex(data));
    expect((await fetch(url, { method: 'HEAD', headers: tus })).headers.get('upload-offset')).toBe(String(data.length));
  });

  const idOf = (url: string): string => url.split('/').pop() as string;

  /** A partial upload (Upload-Concat: partial) of `data`, written whole on creation: its URL. */
  async function partial(data: Buffer): Promise<string> {
    const r = await fetch(files, {
      method: 'POST',
      headers: {
        ...tus,
        'Upload-Concat': 'partial',
        'Upload-Length': String(data.length),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: data,
    });
    expect([r.status, r.headers.get('upload-offset')]).toEqual([201, String(data.length)]);
    return r.headers.get('location') as string;
  }

  /** POST of a final upload (Upload-Concat: final) naming `urls`. */
  function final(urls: string[], extra: Record<string, string> = {}, headers: Record<string, string> = tus): Promise<Response> {
    return fetch(files, { method: 'POST', headers: { ...headers, 'Upload-Concat': `final;${urls.join(' ')}`, ...extra } });
  }

  describe('concatenation', () => {
    it('tus-js-client with parallelUploads: 3 uploads partial uploads, then a final one: only the final is published, as tus/{id}', async () => {
      const data = patternBytes(5 * MiB + 321, 12);
      const partials: string[] = [];
      const { upload: u, done } = upload(data, {
        parallelUploads: 3,
        chunkSize: MiB,
        onAfterResponse: (req, res) => {
          if (req.getMethod() === 'POST' && req.getHeader('Upload-Concat') === 'partial' && res.getStatus() === 201) {
            partials.push(res.getHeader('Location') as string);
          }
        },
      });
      u.start();
      const url = await done;
      expect(partials).toHaveLength(3);
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
      const concat = head.headers.get('upload-concat') as string;
      expect(concat).toMatch(/^final;/);
      expect(concat.slice('final;'.length).split(' ').sort()).toEqual([...partials].sort());
      // the partial uploads are whole, not published, and keep their bytes until they expire
      let total = 0;
      for (const p of partials) {
        const ph = await fetch(p, { method: 'HEAD', headers: tus });
        const length = Number(ph.headers.get('upload-length'));
        expect([ph.status, ph.headers.get('upload-concat'), ph.headers.get('upload-offset')]).toEqual([200, 'partial', String(length)]);
        expect(await h.app.get(UploadEngine).object(`tus/${idOf(p)}`)).toBeUndefined();
        expect(await h.storage.stagingSize(`tus_${idOf(p)}`)).toBe(length);
        total += length;
      }
      expect(total).toBe(data.length);
    });

    it('concatenates partial uploads named by URL or path, in order and more than once; HEAD describes the final, PATCH of it is 403', async () => {
      const a = patternBytes(MiB + 17, 21);
      const b = patternBytes(300_000, 22);
      const ua = await partial(a);
      const ub = await partial(b);
      // a whole partial upload answers as one, with its expiry; a PATCH at its end changes nothing
      const pa = await fetch(ua, { method: 'HEAD', headers: tus });
      expect([pa.status, pa.headers.get('upload-concat'), pa.headers.get('upload-offset'), pa.headers.get('upload-length')]).toEqual([
        200,
        'partial',
        String(a.length),
        String(a.length),
      ]);
      expect(pa.headers.get('upload-expires')).toBeTruthy();
      const again = await patch(ua, a.length, Buffer.alloc(0));
      expect([again.status, again.headers.get('upload-offset')]).toEqual([204, String(a.length)]);
      await expectError(await patch(ua, 0, Buffer.alloc(0)), 409, 'FAILED_PRECONDITION', /partial upload is complete at/);
      expect(await h.app.get(UploadEngine).object(`tus/${idOf(ua)}`)).toBeUndefined();

      const names = [new URL(ub).pathname, ua, new URL(ub).pathname];
      const r = await final(names, { 'Upload-Metadata': `filename ${Buffer.from('joined.bin').toString('base64')}` });
      expect(r.status).toBe(201);
      const url = new URL(r.headers.get('location') as string, files).href;
      const expected = Buffer.concat([b, a, b]);
      const o = await object(url);
      expect([o.size, o.sha256, o.contentType]).toEqual([expected.length, sha256Hex(expected), 'application/octet-stream']);
      expect(o.bytes.equals(expected)).toBe(true);
      expect(o.metadata).toEqual({ filename: 'joined.bin' });
      const head = await fetch(url, { method: 'HEAD', headers: tus });
      expect([
        head.status,
        head.headers.get('upload-concat'),
        head.headers.get('upload-length'),
        head.headers.get('upload-offset'),
        head.headers.get('upload-metadata'),
      ]).toEqual([200, `final;${names.join(' ')}`, String(expected.length), String(expected.length), expect.any(String)]);
      await expectError(await patch(url, expected.length, Buffer.alloc(0)), 403, 'PERMISSION_DENIED', /is a final upload/);
      // the partial uploads stay (another final may use them) until they expire or are terminated
      expect((await fetch(ua, { method: 'HEAD', headers: tus })).status).toBe(200);
      expect((await fetch(ua, { method: 'DELETE', headers: tus })).status).toBe(204);
      expect(await h.storage.stagingSize(`tus_${idOf(ua)}`)).toBeUndefined();
      await expectError(await final([ub, ua]), 400, 'INVALID_ARGUMENT', /names no upload \(unknown, expired or terminated\)/);
      // the final upload, published, cannot be terminated
      await expectError(await fetch(url, { method: 'DELETE', headers: tus }), 409, 'FAILED_PRECONDITION', /is finished/);
    });

    it("refuses a final upload naming a partial that is unfinished, not partial, unknown or another client's, or with Upload-Length, creating nothing", async () => {
      const whole = await partial(patternBytes(1000, 31));
      const r = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Concat': 'partial', 'Upload-Length': '2000' } });
      expect(r.status).toBe(201);
      const unfinished = r.headers.get('location') as string;
      expect((await patch(unfinished, 0, Buffer.alloc(500))).status).toBe(204);
      const plain = await create(10);
      const big = await partial(patternBytes(2 * MiB, 32));
      const indexed = await uploadsIndexed();

      await expectError(await final([whole, unfinished]), 400, 'INVALID_ARGUMENT', /is not finished: 500 of 2000 bytes uploaded/);
      await expectError(await final([whole, plain]), 400, 'INVALID_ARGUMENT', /is not a partial upload/);
      await expectError(await final([whole, `${files}${'A'.repeat(22)}`]), 400, 'INVALID_ARGUMENT', /names no upload/);
      await expectError(await final([whole], { 'Upload-Length': '1000' }), 400, 'INVALID_ARGUMENT', /send no Upload-Length/);
      await expectError(await final([]), 400, 'INVALID_ARGUMENT', /names no partial upload/);
      const withBody = await fetch(files, {
        method: 'POST',
        headers: { ...tus, 'Upload-Concat': `final;${whole}`, 'Content-Type': 'application/offset+octet-stream' },
        body: Buffer.alloc(10),
      });
      await expectError(withBody, 400, 'INVALID_ARGUMENT', /takes no body/);
      await expectError(await final(['/elsewhere/x']), 400, 'INVALID_ARGUMENT', /names no upload/);
      const bad = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Concat': 'partial;x', 'Upload-Length': '5' } });
      await expectError(bad, 400, 'INVALID_ARGUMENT', /Upload-Concat must be/);
      // over Tus-Max-Size: 413
      await expectError(await final(Array.from({ length: MAX / (2 * MiB) + 1 }, () => big)), 413, 'OUT_OF_RANGE', /over Tus-Max-Size/);
      // another client's partial upload: dave may write tus uploads, but not name bob's; alice may not write any
      const dave = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${DAVE.accessToken}` };
      await expectError(await final([whole], {}, dave), 403, 'PERMISSION_DENIED', /an upload of another client/);
      expect((await final([whole], {}, { 'Tus-Resumable': '1.0.0', Authorization: 'Bearer alice-token' })).status).toBe(403);

      // no final upload was created, the partial uploads are as they were
      expect(await uploadsIndexed()).toBe(indexed);
      expect((await fetch(unfinished, { method: 'HEAD', headers: tus })).headers.get('upload-offset')).toBe('500');
      expect((await fetch(whole, { method: 'HEAD', headers: tus })).headers.get('upload-offset')).toBe('1000');
      // once whole, the partial can be concatenated
      expect((await patch(unfinished, 500, patternBytes(1500, 33))).status).toBe(204);
      expect((await final([whole, unfinished])).status).toBe(201);
    });

    it('continues a final upload whose copy stopped half way on a later HEAD, and drops one whose partial upload is gone by then (410)', async () => {
      const sessions = h.app.get(SessionStore);
      const a = patternBytes(2 * MiB + 5, 41);
      const b = patternBytes(MiB, 42);
      const c = patternBytes(70_000, 43);
      const [ua, ub, uc] = [await partial(a), await partial(b), await partial(c)];
      // b and c are held (as a final upload copying them holds them): the two finals copy a, wait for
      // their second partial in vain and give up, as a process that died would stop, keeping what they copied
      const held = [await sessions.acquireLease(`tus_${idOf(ub)}`), await sessions.acquireLease(`tus_${idOf(uc)}`)];
      const renew = setInterval(() => held.forEach((l) => void sessions.renewLease(l).catch(() => undefined)), 1000);
      const finals = new Map<string, string>();
      const findFinals = async (): Promise<boolean> => {
        for (const id of await h.app.get<Redis>(REDIS).zrange(h.app.get(RedisKeys).uploadsByActivity(), 0, -1)) {
          const session = await sessions.get(id);
          if (session?.attributes['concat']?.startsWith('final;')) finals.set(session.attributes['concat'], id);
        }
        return finals.size === 2;
      };
      let stuck: Response[];
      try {
        const posts = Promise.all([final([ua, ub]), final([ua, uc])]);
        await waitFor('the two final uploads to exist', findFinals);
        // while a POST copies it, a HEAD of the final answers at once: its length, no offset yet
        const url = `${files}${(finals.get(`final;${ua} ${ub}`) as string).slice('tus_'.length)}`;
        const during = await fetch(url, { method: 'HEAD', headers: tus });
        expect([during.status, during.headers.get('upload-offset'), during.headers.get('upload-length')]).toEqual([
          200,
          null,
          String(a.length + b.length),
        ]);
        stuck = await posts;
      } finally {
        clearInterval(renew);
        for (const l of held) await sessions.releaseLease(l);
      }
      for (const r of stuck) await expectError(r, 409, 'ABORTED', /partial upload .* is in use/);
      const [f1, f2] = [finals.get(`final;${ua} ${ub}`), finals.get(`final;${ua} ${uc}`)] as string[];
      expect([f1, f2]).toEqual([expect.stringMatching(/^tus_/), expect.stringMatching(/^tus_/)]);
      // each kept a's bytes, committed
      expect([(await sessions.get(f1))?.committed, (await sessions.get(f2))?.committed]).toEqual([a.length, a.length]);

      // c is terminated meanwhile
      expect((await fetch(uc, { method: 'DELETE', headers: tus })).status).toBe(204);
      // a HEAD of the first final continues its copy from there and publishes it
      const url1 = `${files}${f1.slice('tus_'.length)}`;
      const h1 = await fetch(url1, { method: 'HEAD', headers: tus });
      expect([h1.status, h1.headers.get('upload-offset'), h1.headers.get('upload-length'), h1.headers.get('upload-concat')]).toEqual([
        200,
        String(a.length + b.length),
        String(a.length + b.length),
        `final;${ua} ${ub}`,
      ]);
      const o = await object(url1);
      expect([o.size, o.sha256]).toEqual([a.length + b.length, sha256Hex(Buffer.concat([a, b]))]);
      // the second can never be completed: it is dropped with its bytes, nothing published
      const url2 = `${files}${f2.slice('tus_'.length)}`;
      expect((await fetch(url2, { method: 'HEAD', headers: tus })).status).toBe(410);
      expect((await fetch(url2, { method: 'HEAD', headers: tus })).status).toBe(404);
      expect(await h.storage.stagingSize(f2)).toBeUndefined();
      expect(await h.app.get(UploadEngine).object(`tus/${f2.slice('tus_'.length)}`)).toBeUndefined();
    });
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

describe('tus uploads past their lifetime, expired by the worker (UploadExpiry)', () => {
  let h: MultipartHarness;
  const tus = { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${TOKEN}` };
  const LIFETIME_MS = 3000;

  beforeAll(async () => {
    h = await startMultipartApi({ FERRY_TUS_UPLOAD_TTL_MS: String(LIFETIME_MS) }, false);
  });

  afterAll(async () => {
    await h.close();
  });

  it('are gone for HEAD at once, then the expiry deletes their staged bytes and session; a partial a final is copying stays', async () => {
    const files = `${h.base}/files/`;
    const post = async (headers: Record<string, string>, body?: Buffer): Promise<string> => {
      const r = await fetch(files, {
        method: 'POST',
        headers: { ...tus, ...headers, ...(body ? { 'Content-Type': 'application/offset+octet-stream' } : {}) },
        body,
      });
      expect(r.status).toBe(201);
      return r.headers.get('location') as string;
    };
    const unfinished = await post({ 'Upload-Length': '1000' }, patternBytes(400, 51));
    const whole = await post({ 'Upload-Length': '300', 'Upload-Concat': 'partial' }, patternBytes(300, 52));
    const inUse = await post({ 'Upload-Length': '200', 'Upload-Concat': 'partial' }, patternBytes(200, 53));
    const ids = [unfinished, whole, inUse].map((u) => `tus_${u.split('/').pop() as string}`);
    const sessions = h.app.get(SessionStore);
    const storage = h.app.get<Storage>(STORAGE);
    // the worker's expiry, as the worker builds it (idle lifetime from the same configuration)
    const expiry = new UploadExpiry(sessions, storage, h.config.uploads.idleLifetimeMs);
    const head = (url: string) => fetch(url, { method: 'HEAD', headers: tus });

    expect((await expiry.run()).expiredSessions).toBe(0); // within their lifetime: left alone
    expect(await Promise.all(ids.map((id) => storage.stagingSize(id)))).toEqual([400, 300, 200]);
    // a final upload copying `inUse` holds its lease: the expiry leaves it alone past its lifetime
    const copying = await sessions.acquireLease(ids[2]);
    const renew = setInterval(() => void sessions.renewLease(copying).catch(() => undefined), 1000);
    try {
      await waitFor(
        'their lifetime to pass',
        async () => (await head(unfinished)).status === 404 && (await head(whole)).status === 404 && !(await sessions.get(ids[2])),
      );
      // gone for clients, the bytes are there until the worker's expiry runs
      expect(await Promise.all(ids.map((id) => storage.stagingSize(id)))).toEqual([400, 300, 200]);
      expect(await expiry.run()).toMatchObject({ expiredSessions: 2 });
      expect(await Promise.all(ids.map((id) => storage.stagingSize(id)))).toEqual([undefined, undefined, 200]);
      expect(await Promise.all(ids.map((id) => sessions.exists(id)))).toEqual([false, false, true]);
    } finally {
      clearInterval(renew);
      await sessions.releaseLease(copying);
    }
    // released, it goes too
    expect(await expiry.run()).toMatchObject({ expiredSessions: 1 });
    expect(await storage.stagingSize(ids[2])).toBeUndefined();
    expect((await head(unfinished)).status).toBe(404);
    const resume = await fetch(unfinished, {
      method: 'PATCH',
      headers: { ...tus, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '400' },
      body: patternBytes(600, 54),
    });
    expect(resume.status).toBe(404);
    const r = await fetch(files, { method: 'POST', headers: { ...tus, 'Upload-Concat': `final;${whole}` } });
    expect([r.status, ((await r.json()) as { message: string }).message]).toEqual([400, expect.stringMatching(/names no upload/)]);
    expect(await h.app.get(UploadEngine).object(`tus/${unfinished.split('/').pop() as string}`)).toBeUndefined();
  });
});
