import { execFile } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Principal } from '@ferry/auth';
import { Catalog } from '@ferry/catalog';
import { AlreadyExistsError } from '@ferry/errors';
import { ObjectService, objectSessionId } from '@ferry/objects';
import { REDIS } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { SessionStore } from '@ferry/sessions';
import { UploadEngine } from '@ferry/uploads';
import { hawkHeader, patternBytes, sha256Hex, sleep, waitFor } from '@ferry/testing';
import { ObjectHarness, startObjectApi } from '../testing/object.harness';

const run = promisify(execFile);
const sha512Hex = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const slugid = () => {
  const b = Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex');
  return b.toString('base64url');
};

type Json = Record<string, unknown>;

describe('object-api (real HTTP, Redis and disk)', () => {
  let h: ObjectHarness;
  const expires = new Date(Date.now() + 86_400_000).toISOString();

  beforeAll(async () => {
    h = await startObjectApi();
  });

  afterAll(async () => {
    await h.close();
  });

  async function call(
    method: string,
    path: string,
    body?: unknown,
    token: string | null = 'uploader-token',
  ): Promise<{ status: number; body: Json; headers: Headers }> {
    const res = await fetch(`${h.base}/api/object/v1${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: 'manual',
    });
    const text = await res.text();
    return {
      status: res.status,
      body: text && res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as Json) : { text },
      headers: res.headers,
    };
  }

  const enc = encodeURIComponent;

  /** createUpload of `name` proposing a putUrl for `contentLength` bytes: its uploadId, request body and the putUrl offered. */
  async function createWithPutUrl(name: string, contentLength: number) {
    const uploadId = slugid();
    const body = { projectId: 'proj/a', uploadId, expires, proposedUploadMethods: { putUrl: { contentType: 'x/y', contentLength } } };
    const put = (
      (await call('PUT', `/upload/${enc(name)}`, body)).body['uploadMethod'] as { putUrl: { url: string; headers: Record<string, string> } }
    ).putUrl;
    return { uploadId, body, put };
  }

  async function uploadInline(name: string, data: Buffer, uploadId = slugid(), expiresAt = expires) {
    const r = await call('PUT', `/upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      expires: expiresAt,
      proposedUploadMethods: {
        dataInline: { contentType: 'text/plain', objectData: data.toString('base64') },
        putUrl: { contentType: 'text/plain', contentLength: data.length },
      },
    });
    return { r, uploadId };
  }

  it('answers ping and the Dockerflow endpoints', async () => {
    expect((await call('GET', '/ping', undefined, null)).body).toMatchObject({ alive: true, uptime: expect.any(Number) });
    for (const p of ['__heartbeat__', '__lbheartbeat__', '__version__']) {
      expect((await fetch(`${h.base}/${p}`)).status).toBe(200);
      expect((await fetch(`${h.base}/api/object/v1/${p}`)).status).toBe(200);
    }
  });

  it('stores a small object inline, finishes it with its hashes, and serves metadata, getUrl, simple and download', async () => {
    const data = Buffer.from('hello');
    const name = 'small objects/with spaces & punctuation!.txt';
    const { r, uploadId } = await uploadInline(name, data);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ projectId: 'proj/a', uploadId, expires, uploadMethod: { dataInline: true } });
    expect((await call('PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: { getUrl: true } })).status).toBe(404);
    const hashes = { sha256: sha256Hex(data), sha512: sha512Hex(data) };
    expect((await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes })).body).toEqual({});
    // finishing again with the same hashes succeeds; with other hashes it conflicts
    expect(
      (await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: hashes.sha256 } })).status,
    ).toBe(200);
    expect(
      (await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex('x') } })).status,
    ).toBe(409);
    expect((await call('GET', `/metadata/${enc(name)}`, undefined, 'reader-token')).body).toEqual({ projectId: 'proj/a', expires, hashes });
    const get = await call(
      'PUT',
      `/start-download/${enc(name)}`,
      { acceptDownloadMethods: { getUrl: true, simple: true } },
      'reader-token',
    );
    expect(get.body).toMatchObject({
      method: 'getUrl',
      url: expect.stringContaining('/data/objects/'),
      expires: expect.any(String),
      hashes,
    });
    expect(Buffer.from(await (await fetch(String(get.body['url']))).arrayBuffer()).toString()).toBe('hello');
    const simple = await call('PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: { simple: true } }, 'reader-token');
    expect(simple.body).toEqual({ method: 'simple', url: expect.any(String) });
    const none = await call('PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: {} }, 'reader-token');
    expect([none.status, none.body['code']]).toEqual([406, 'NoMatchingMethod']);
    const redirect = await call('GET', `/download/${enc(name)}`, undefined, 'reader-token');
    expect(redirect.status).toBe(303);
    const ranged = await fetch(redirect.headers.get('location') ?? '', { headers: { range: 'bytes=1-3' } });
    expect([ranged.status, await ranged.text()]).toEqual([206, 'ell']);
    // the object is immutable: a new upload of the name conflicts
    expect((await uploadInline(name, Buffer.from('other'))).r.status).toBe(409);
  });

  it('negotiates a putUrl for large objects, verifies size and hashes at finish, and publishes nothing on a mismatch', async () => {
    const data = patternBytes(3 * 1024 * 1024, 9);
    const name = 'big/object.bin';
    const uploadId = slugid();
    const body = {
      projectId: 'proj/a',
      uploadId,
      expires,
      proposedUploadMethods: { putUrl: { contentType: 'application/x-big', contentLength: data.length } },
    };
    const first = await call('PUT', `/upload/${enc(name)}`, body);
    const put = first.body['uploadMethod'] as { putUrl: { url: string; expires: string; headers: Record<string, string> } };
    expect(put.putUrl.headers).toEqual({ 'Content-Type': 'application/x-big', 'Content-Length': String(data.length) });
    // idempotent while unfinished: the same call renews the URL
    const again = await call('PUT', `/upload/${enc(name)}`, body);
    expect(again.status).toBe(200);
    expect(again.body['uploadId']).toBe(uploadId);
    // another uploadId, or other expires, conflict
    expect((await call('PUT', `/upload/${enc(name)}`, { ...body, uploadId: slugid() })).status).toBe(409);
    expect((await call('PUT', `/upload/${enc(name)}`, { ...body, expires: new Date(Date.now() + 7_200_000).toISOString() })).status).toBe(
      409,
    );
    // finishing before any byte arrived conflicts
    expect((await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId })).status).toBe(409);
    // a tampered URL and a wrong length are refused
    expect(
      (
        await fetch(put.putUrl.url.replace('X-Ferry-Signature=', 'X-Ferry-Signature=x'), {
          method: 'PUT',
          headers: put.putUrl.headers,
          body: data,
        })
      ).status,
    ).toBe(403);
    const res = await fetch(put.putUrl.url, { method: 'PUT', headers: put.putUrl.headers, body: data });
    expect(res.status).toBe(200);
    // wrong hashes: refused, nothing published
    const bad = await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex('nope') } });
    expect([bad.status, bad.body['code']]).toEqual([400, 'InputError']);
    expect(String(bad.body['message'])).toMatch(/nothing was published/);
    expect((await call('GET', `/metadata/${enc(name)}`)).status).toBe(404);
    // wrong uploadId, wrong projectId
    expect((await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId: slugid() })).status).toBe(409);
    const otherProject = await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/b', uploadId });
    expect([otherProject.status, otherProject.body['code']]).toEqual([400, 'InputError']);
    // a sha512 declared only now (as taskcluster-client's upload() does) is computed now, and verified
    const badSha512 = await call('POST', `/finish-upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      hashes: { sha256: sha256Hex(data), sha512: sha512Hex(Buffer.from('x')) },
    });
    expect([badSha512.status, badSha512.body['code']]).toEqual([400, 'InputError']);
    expect(String(badSha512.body['message'])).toMatch(/sha512 is [0-9a-f]{128}, not the declared/);
    expect((await call('GET', `/metadata/${enc(name)}`)).status).toBe(404);
    const ok = await call('POST', `/finish-upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      hashes: { sha256: sha256Hex(data), sha512: sha512Hex(data) },
    });
    expect(ok.status).toBe(200);
    const object = await h.app.get(Catalog).get(name);
    expect(object?.md5).toBeUndefined(); // digests by need: the object API needs none
    expect(object).toMatchObject({
      size: data.length,
      sha256: sha256Hex(data),
      sha512: sha512Hex(data),
      protocol: 'object',
      project: 'proj/a',
      expires,
    });
    expect((await call('PUT', `/upload/${enc(name)}`, body)).status).toBe(409);
  });

  it('forgets the stored bytes when a new PUT begins: a broken re-PUT leaves nothing to finish', async () => {
    const data = patternBytes(2 * 1024 * 1024, 11);
    const name = 'replaced/object.bin';
    const { uploadId, put } = await createWithPutUrl(name, data.length);
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
    const redis = h.app.get<Redis>(REDIS);
    const lease = h.app.get(RedisKeys).uploadLease(objectSessionId(name));
    // a second PUT breaks off half way
    const req = httpRequest(put.url, { method: 'PUT', headers: put.headers });
    req.on('error', () => undefined);
    await new Promise<void>((resolve) => req.write(data.subarray(0, data.length / 2), () => resolve()));
    // the server has begun it once it holds the upload's lease (taken as the stored bytes are forgotten)
    await waitFor('the second PUT to take the upload lease', async () => (await redis.exists(lease)) === 1);
    // while it is in flight, finishing is refused
    const during = await call('POST', `/finish-upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      hashes: { sha256: sha256Hex(data) },
    });
    expect([during.status, during.body['message']]).toEqual([409, expect.stringMatching(/in progress/)]);
    req.destroy();
    // the server has given it up once it released the lease
    await waitFor('the broken PUT to release the upload lease', async () => (await redis.exists(lease)) === 0);
    const after = await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } });
    expect([after.status, after.body['message']]).toEqual([409, expect.stringMatching(/no data was uploaded/)]);
    expect((await call('GET', `/metadata/${enc(name)}`)).status).toBe(404);
    // a complete PUT again makes it finishable
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
    expect(
      (await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } })).status,
    ).toBe(200);
  });

  it('lets the newest PUT win: it takes over from one still running and from one whose process died', async () => {
    const first = patternBytes(4 * 1024 * 1024, 12);
    const second = patternBytes(4 * 1024 * 1024, 13);
    const name = 'newest/put.bin';
    const { uploadId, put } = await createWithPutUrl(name, first.length);
    const stagingIds = async () => {
      const ids: string[] = [];
      for await (const e of h.storage.listStaging()) ids.push(e.uploadId);
      return ids.sort();
    };
    const before = await stagingIds();
    const redis = h.app.get<Redis>(REDIS);
    const lease = h.app.get(RedisKeys).uploadLease(objectSessionId(name));
    // a PUT that stalls half way, its connection still open
    const stalled = new Promise<number>((resolve) => {
      const req = httpRequest(put.url, { method: 'PUT', headers: put.headers });
      req.on('error', () => resolve(-1));
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.write(first.subarray(0, first.length / 2));
    });
    // it is running once the server holds the upload's lease for it
    await waitFor('the stalled PUT to take the upload lease', async () => (await redis.exists(lease)) === 1);
    // the client gives up on it and PUTs again: the new PUT is not refused, and it is what is stored
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: second })).status).toBe(200);
    // the stalled PUT learns it was replaced (at its next lease renewal) and stores nothing
    expect(await stalled).toBe(409);
    // a lease left behind by a process killed mid-PUT does not block the next PUT either
    await redis.set(lease, 'killed-holder', 'PX', 60_000);
    const during = await call('POST', `/finish-upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      hashes: { sha256: sha256Hex(second) },
    });
    expect([during.status, during.body['message']]).toEqual([409, expect.stringMatching(/in progress/)]);
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: second })).status).toBe(200);
    expect(
      (await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(second) } })).status,
    ).toBe(200);
    const download = (await call('PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: { getUrl: true } })).body as {
      url: string;
    };
    expect(sha256Hex(Buffer.from(await (await fetch(download.url)).arrayBuffer()))).toBe(sha256Hex(second));
    // every PUT wrote a staging object of its own; none is left behind
    expect(await stagingIds()).toEqual(before);
  });

  it('lets one finish change an upload at a time: PUTs, createUpload and other finishes wait their turn or are refused', async () => {
    const data = patternBytes(64 * 1024, 14);
    const name = 'finish/race.bin';
    const { uploadId, body, put } = await createWithPutUrl(name, data.length);
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
    // another replica is finishing it (it holds the upload's lease as a finisher)
    const redis = h.app.get<Redis>(REDIS);
    const lease = h.app.get(RedisKeys).uploadLease(objectSessionId(name));
    const sessions = h.app.get(SessionStore);
    const elsewhere = await sessions.acquireLease(objectSessionId(name), 'publish');
    const putDuring = await fetch(put.url, { method: 'PUT', headers: put.headers, body: patternBytes(64 * 1024, 15) });
    expect([putDuring.status, ((await putDuring.json()) as Json)['message']]).toEqual([409, expect.stringMatching(/being finished/)]);
    const renew = await call('PUT', `/upload/${enc(name)}`, body);
    expect([renew.status, renew.body['message']]).toEqual([409, expect.stringMatching(/being finished/)]);
    // a finish (a client's retry) waits for the other one; that one dies, so this one finishes
    const finish = { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } };
    // (the finish waiting polls the lease: seen here, the other finish ends only once this one waits)
    const polled = jest.spyOn(redis, 'exists');
    try {
      const retried = call('POST', `/finish-upload/${enc(name)}`, finish);
      await waitFor('the retried finish to wait for the finish elsewhere', () =>
        polled.mock.calls.some((args: unknown[]) => args[0] === lease),
      );
      await sessions.releaseLease(elsewhere);
      expect((await retried).status).toBe(200);
    } finally {
      polled.mockRestore();
    }
    // finishes at once, as a client and its retries send them: all succeed, one object
    const again = await Promise.all([1, 2, 3].map(() => call('POST', `/finish-upload/${enc(name)}`, finish)));
    expect(again.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await call('GET', `/metadata/${enc(name)}`, undefined, 'reader-token')).body).toMatchObject({
      hashes: { sha256: sha256Hex(data) },
    });
    expect((await call('PUT', `/upload/${enc(name)}`, body)).status).toBe(409); // finished
    // a name whose object has expired (not yet removed by the worker) can be uploaded again
    const catalog = h.app.get(Catalog);
    const old = await catalog.get(name);
    await catalog.delete(name);
    await catalog.publish({ ...(old as NonNullable<typeof old>), expires: new Date(Date.now() - 1000).toISOString() });
    expect((await call('PUT', `/upload/${enc(name)}`, { ...body, uploadId: slugid() })).status).toBe(200);
    // and so can a name whose unfinished upload passed its lifetime (FERRY_OBJECT_UPLOAD_TTL_MS) before the worker removed it
    const sessionKey = h.app.get(RedisKeys).upload(objectSessionId(name));
    await redis.hset(sessionKey, 'deadline', Date.now() - 1);
    const anew = await call('PUT', `/upload/${enc(name)}`, { ...body, uploadId: slugid() });
    expect([anew.status, anew.body['code']]).toEqual([200, undefined]);
    expect(Number(await redis.hget(sessionKey, 'deadline'))).toBeGreaterThan(Date.now());
  });

  it('lets only one of several racing createUploads declare a hash: the others conflict (409) and the finish verifies that one', async () => {
    const name = 'racing/declarations';
    const data = patternBytes(64 * 1024, 41);
    const { uploadId, body, put } = await createWithPutUrl(name, data.length);
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
    // each declares a different sha256 (one of them the right one) for the same upload, all at once
    // (called on the service in one tick, so that every call reads the upload before any writes)
    const candidates = [sha256Hex(data), ...Array.from({ length: 7 }, (_, i) => sha256Hex(Buffer.from(`not it ${i}`)))];
    const objects = h.app.get(ObjectService);
    const principal: Principal = { clientId: 'uploader', scopes: ['*'] };
    const answers = await Promise.allSettled(
      candidates.map((sha256) => objects.createUpload(principal, name, { ...body, hashes: { sha256 } }, h.base)),
    );
    const accepted = answers.flatMap((a, i) => (a.status === 'fulfilled' ? [candidates[i]] : []));
    expect(accepted).toHaveLength(1);
    for (const a of answers) if (a.status === 'rejected') expect(a.reason).toBeInstanceOf(AlreadyExistsError);
    expect(
      (await call('PUT', `/upload/${enc(name)}`, { ...body, hashes: { sha256: candidates.find((c) => c !== accepted[0]) } })).status,
    ).toBe(409);
    // the finish verifies the one declaration that was accepted
    const finish = await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId });
    if (accepted[0] === sha256Hex(data)) expect(finish.status).toBe(200);
    else expect(finish.status).toBe(400);
  });

  it('finishes an upload whose bytes a failed finish had already published', async () => {
    const data = patternBytes(16 * 1024, 18);
    const name = 'finish/again.bin';
    const { uploadId, put } = await createWithPutUrl(name, data.length);
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
    // a finish moved the staged bytes into their blob, then lost its lease (Redis hiccup) and gave up
    const session = await h.app.get(SessionStore).get(objectSessionId(name));
    await h.storage.publishStaging(`${session?.id}_${session?.writtenBy}`, sha256Hex(data));
    const retried = await call('POST', `/finish-upload/${enc(name)}`, {
      projectId: 'proj/a',
      uploadId,
      hashes: { sha256: sha256Hex(data) },
    });
    expect([retried.status, retried.body['message']]).toEqual([200, undefined]);
    const download = (await call('PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: { getUrl: true } })).body as {
      url: string;
    };
    expect(sha256Hex(Buffer.from(await (await fetch(download.url)).arrayBuffer()))).toBe(sha256Hex(data));
  });

  it('finishes an upload once when several finishes race', async () => {
    const data = patternBytes(32 * 1024, 16);
    const name = 'finish/together.bin';
    const { uploadId, put } = await createWithPutUrl(name, data.length);
    expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
    const finish = { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } };
    const all = await Promise.all([1, 2, 3, 4].map(() => call('POST', `/finish-upload/${enc(name)}`, finish)));
    expect(all.map((r) => [r.status, r.body['message']])).toEqual(all.map(() => [200, undefined]));
  });

  it('serves objects named "." and ".." through putUrl and getUrl, which carry the name so that URL parsers keep it', async () => {
    // the API routes take the name as a path segment: a client that sends the path as it is can
    // create such names; the signed URLs must then work with any client, URL parsers included
    const raw = (method: string, path: string, body: unknown) =>
      new Promise<Json>((resolve, reject) => {
        const { hostname, port } = new URL(h.base); // a path given apart is sent as it is
        const headers = { authorization: 'Bearer uploader-token', 'content-type': 'application/json' };
        const req = httpRequest({ hostname, port, path: `/api/object/v1${path}`, method, headers }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode, ...(JSON.parse(text || '{}') as Json) }));
        });
        req.on('error', reject);
        req.end(JSON.stringify(body));
      });
    for (const name of ['.', '..']) {
      const data = Buffer.from(`bytes of ${name}`);
      const uploadId = slugid();
      const body = {
        projectId: 'proj/a',
        uploadId,
        expires,
        proposedUploadMethods: { putUrl: { contentType: 'x/y', contentLength: data.length } },
      };
      const created = await raw('PUT', `/upload/${name}`, body);
      expect(created).toMatchObject({ status: 200 });
      const put = (created['uploadMethod'] as { putUrl: { url: string; headers: Record<string, string> } }).putUrl;
      expect((await fetch(put.url, { method: 'PUT', headers: put.headers, body: data })).status).toBe(200);
      expect(
        (await raw('POST', `/finish-upload/${name}`, { projectId: 'proj/a', uploadId, hashes: { sha256: sha256Hex(data) } }))['status'],
      ).toBe(200);
      const download = (await raw('PUT', `/start-download/${name}`, { acceptDownloadMethods: { getUrl: true } })) as { url: string };
      expect(Buffer.from(await (await fetch(download.url)).arrayBuffer()).toString()).toBe(`bytes of ${name}`);
    }
  });

  it('validates bodies and names, and authenticates (bearer and Hawk) and authorises every call', async () => {
    const good = { projectId: 'proj/a', uploadId: slugid(), expires, proposedUploadMethods: {} };
    const invalid: [unknown, RegExp][] = [
      [{ ...good, extra: 1 }, /Unrecognized key/],
      [{ ...good, uploadId: 'not-a-slugid' }, /slugid/],
      [{ ...good, projectId: 'bad project' }, /projectId/],
      [{ ...good, expires: 'tomorrow' }, /expires/],
      [{ ...good, hashes: { sha256: 'abc' } }, /sha256 must be/],
      [{ ...good, proposedUploadMethods: { putUrl: { contentType: 'text/plain\nX-Evil: 1', contentLength: 1 } } }, /printable ASCII/],
    ];
    for (const [body, why] of invalid) {
      const r = await call('PUT', '/upload/n1', body);
      expect([r.status, r.body['code'], r.body['message']]).toEqual([400, 'InputValidationError', expect.stringMatching(why)]);
    }
    // a body past the JSON limit is the client's mistake (413, Taskcluster's InputTooLarge), not a busy server (5xx, retried)
    const huge = await call('PUT', '/upload/n1', { ...good, padding: 'x'.repeat(1100 * 1024) });
    expect([huge.status, huge.body['code'], huge.body['message']]).toEqual([
      413,
      'InputTooLarge',
      expect.stringMatching(/larger than the 1048576 bytes/),
    ]);
    // nothing offered: {} is an answer, not an error
    expect((await call('PUT', '/upload/n1', good)).body['uploadMethod']).toEqual({});
    const badName = await call('PUT', `/upload/${enc('tab\there')}`, good);
    expect([badName.status, badName.body['code']]).toEqual([400, 'InvalidRequestArguments']);
    const noAuth = await call('PUT', '/upload/n2', good, null);
    expect([noAuth.status, noAuth.body['code']]).toEqual([401, 'AuthenticationFailed']);
    expect((await call('PUT', '/upload/n2', good, 'wrong-token')).status).toBe(401);
    const scopes = await call('PUT', '/upload/n2', good, 'reader-token');
    expect([scopes.status, scopes.body['code']]).toEqual([403, 'InsufficientScopes']);
    expect((await call('PUT', '/upload/n2', { ...good, projectId: 'other' })).status).toBe(403);
    // fileHandle/ names are multipart file handles: readable here, never created here
    const reserved = await call('PUT', `/upload/${enc('fileHandle/7')}`, good);
    expect([reserved.status, reserved.body['code'], reserved.body['message']]).toEqual([
      403,
      'InsufficientScopes',
      expect.stringMatching(/multipart file handles/),
    ]);

    // Hawk, as Taskcluster clients sign; a replay is refused
    const url = `${h.base}/api/object/v1/metadata/${enc('small objects/with spaces & punctuation!.txt')}`;
    const header = hawkHeader(url, 'GET', 'reader', 'reader-token');
    expect((await fetch(url, { headers: { authorization: header } })).status).toBe(200);
    const replay = await fetch(url, { headers: { authorization: header } });
    expect([replay.status, ((await replay.json()) as Json)['code']]).toEqual([401, 'AuthenticationFailed']);
    const wrongKey = hawkHeader(url, 'GET', 'reader', 'nope');
    expect((await fetch(url, { headers: { authorization: wrongKey } })).status).toBe(401);
    const stale = hawkHeader(url, 'GET', 'reader', 'reader-token', { timestamp: Math.floor(Date.now() / 1000) - 1000 });
    const staleRes = await fetch(url, { headers: { authorization: stale } });
    expect([staleRes.status, ((await staleRes.json()) as Json)['message']]).toEqual([401, expect.stringMatching(/stale timestamp/)]);
    // signed for another host: the MAC covers host and port
    const elsewhere = hawkHeader(url.replace('127.0.0.1', 'localhost'), 'GET', 'reader', 'reader-token');
    expect((await fetch(url, { headers: { authorization: elsewhere } })).status).toBe(401);
  });

  it('serves objects uploaded through ByteStream and multipart under their catalog names', async () => {
    const data = Buffer.from('from another protocol');
    await h.storage.putBlob(data, sha256Hex(data));
    const catalog = h.app.get(Catalog);
    for (const name of ['builds/app.tar.gz', 'fileHandle/42']) {
      await catalog.publish({
        name,
        size: data.length,
        sha256: sha256Hex(data),
        md5: '',
        crc32c: '',
        contentType: 'application/gzip',
        owner: 'dev',
        project: '',
        createdAt: new Date().toISOString(),
        expires: null,
        protocol: 'bytestream',
        blob: sha256Hex(data),
      });
      expect((await call('GET', `/metadata/${enc(name)}`, undefined, 'reader-token')).body).toMatchObject({
        hashes: { sha256: sha256Hex(data) },
      });
      const r = await call('GET', `/download/${enc(name)}`, undefined, 'reader-token');
      expect(await (await fetch(r.headers.get('location') ?? '')).text()).toBe('from another protocol');
    }
  });

  it('accepts Hawk signed for its public URL or for the proxy-reported scheme (TLS terminated in front)', async () => {
    const proxied = await startObjectApi({ FERRY_PUBLIC_URL_OBJECT: 'https://ferry.example.com' });
    try {
      const path = `/api/object/v1/metadata/${enc('no such object')}`;
      const get = (base: string, authorization: string, headers: Record<string, string> = {}) =>
        new Promise<number>((resolve, reject) => {
          const req = httpRequest(`${base}${path}`, { headers: { authorization, ...headers } }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', reject);
          req.end();
        });
      // signed for the public URL (port 443), arriving over plain HTTP with Host ferry.example.com
      const publicSigned = hawkHeader(`https://ferry.example.com${path}`, 'GET', 'reader', 'reader-token');
      expect(await get(proxied.base, publicSigned, { host: 'ferry.example.com' })).toBe(404); // authenticated: no such object
      // and a client calling the server directly still signs for what it called
      expect(await get(proxied.base, hawkHeader(`${proxied.base}${path}`, 'GET', 'reader', 'reader-token'))).toBe(404);
      expect(await get(proxied.base, hawkHeader(`https://elsewhere.example.com${path}`, 'GET', 'reader', 'reader-token'))).toBe(401);
      // no public URL configured: the scheme a proxy reports sets the default port
      const forwarded = hawkHeader(`https://ferry.example.com${path}`, 'GET', 'reader', 'reader-token');
      expect(await get(h.base, forwarded, { host: 'ferry.example.com', 'x-forwarded-proto': 'https' })).toBe(404);
      expect(
        await get(h.base, hawkHeader(`https://ferry.example.com${path}`, 'GET', 'reader', 'reader-token'), { host: 'ferry.example.com' }),
      ).toBe(401);
    } finally {
      await proxied.close();
    }
  });

  it('forgets an unfinished upload when its lifetime ends, and stops serving an object past its expires', async () => {
    // a second app with its own Redis (a six-node cluster in the cluster run), whose uploads live 400 ms
    const short = await startObjectApi({ FERRY_OBJECT_UPLOAD_TTL_MS: '400' });
    try {
      const token = { authorization: 'Bearer uploader-token', 'content-type': 'application/json' };
      const uploadId = slugid();
      // offered a putUrl only: nothing of the creation depends on the upload still living once its
      // lifetime started (storing data inline does, and a busy machine may take longer than 400 ms)
      const body = { projectId: 'proj/a', uploadId, expires, proposedUploadMethods: { putUrl: { contentType: 'x/y', contentLength: 2 } } };
      expect(
        (await fetch(`${short.base}/api/object/v1/upload/late`, { method: 'PUT', headers: token, body: JSON.stringify(body) })).status,
      ).toBe(200);
      // its lifetime began before the answer: it has ended after this long, however slow the machine
      await sleep(600);
      // (alive, it would answer 409: no data was uploaded)
      const finish = await fetch(`${short.base}/api/object/v1/finish-upload/late`, {
        method: 'POST',
        headers: token,
        body: JSON.stringify({ projectId: 'proj/a', uploadId }),
      });
      expect(finish.status).toBe(404);
    } finally {
      await short.close();
    }
    // an object whose expires has passed is gone for clients even before the worker deletes it: it is
    // served while its expires is ahead, not once it has passed. An answer that came back after the
    // expires says nothing about before it: a machine that slow tries again with more time ahead.
    let brief: { name: string; expires: string } | undefined;
    for (let aheadMs = 500; !brief; aheadMs *= 2) {
      if (aheadMs > 30_000) throw new Error('never got an answer about the object before its expires');
      const name = `brief/${aheadMs}`;
      const soon = new Date(Date.now() + aheadMs).toISOString();
      const { r, uploadId } = await uploadInline(name, Buffer.from('hi'), slugid(), soon);
      expect(r.status).toBe(200);
      expect((await call('POST', `/finish-upload/${enc(name)}`, { projectId: 'proj/a', uploadId })).status).toBe(200);
      const served = await call('GET', `/metadata/${enc(name)}`, undefined, 'reader-token');
      if (Date.now() < Date.parse(soon)) {
        expect(served.status).toBe(200);
        brief = { name, expires: soon };
      }
    }
    await sleep(Math.max(0, Date.parse(brief.expires) - Date.now() + 1));
    expect((await call('GET', `/metadata/${enc(brief.name)}`, undefined, 'reader-token')).status).toBe(404);
    expect(await h.app.get(Catalog).get(brief.name)).toMatchObject({ expires: brief.expires }); // still cataloged
  });

  it('works with the unmodified Taskcluster client (taskcluster-client 87.1.3): upload() and download() of 5 bytes and 3 MiB', async () => {
    const script = join(__dirname, '..', '..', 'test', 'tc-client.mjs');
    for (const [name, size] of [
      ['tc/five bytes', 5],
      ['tc/three-mib', 3 * 1024 * 1024],
    ] as const) {
      const { stdout } = await run(process.execPath, [script, h.base, 'uploader', 'uploader-token', 'proj/tc', name, String(size)]);
      const out = JSON.parse(stdout) as { uploadedSha256: string; downloadedSha256: string; contentType: string };
      expect(out.downloadedSha256).toBe(out.uploadedSha256);
      expect(out.contentType).toBe('application/x-test');
    }
    // and downloads an object another protocol published
    const { stdout } = await run(process.execPath, [
      script,
      h.base,
      'reader',
      'reader-token',
      'proj/tc',
      'builds/app.tar.gz',
      '0',
      'download-only',
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ downloadedSha256: sha256Hex(Buffer.from('from another protocol')) });
  });

  it('serves a tus upload (object tus/{id}, published by the engine as the tus face does): metadata, getUrl and the Taskcluster client', async () => {
    // the tus face (libs/tus, multipart-api) streams a session's bytes through the engine's writer and
    // publishes them as tus/{id}, protocol and project `tus`; the object API reads the one catalog
    const engine = h.app.get(UploadEngine);
    const id = slugid().slice(0, 22);
    const name = `tus/${id}`;
    const data = patternBytes(3 * 1024 * 1024 + 5, 61);
    await engine.getOrCreateSession({
      id: `tus_${id}`,
      name,
      protocol: 'tus',
      owner: 'bob',
      attributes: { length: String(data.length) },
      lifetimeMs: 60_000,
    });
    const writer = await engine.openWriter(`tus_${id}`, [], { policy: 'request' });
    for (let at = 0; at < data.length; at += 64 * 1024) await writer.write(Buffer.from(data.subarray(at, at + 64 * 1024)));
    await writer.finish({ size: data.length, declaredBy: 'Upload-Length' }, (size, digests) => ({
      name,
      size,
      ...digests,
      contentType: 'image/png',
      owner: 'bob',
      project: 'tus',
      createdAt: new Date().toISOString(),
      expires: null,
      protocol: 'tus',
      blob: digests.sha256,
      metadata: { filename: 'a.png' },
    }));
    const meta = await call('GET', `/metadata/${enc(name)}`, undefined, 'reader-token');
    expect([meta.status, meta.body]).toEqual([
      200,
      { projectId: 'tus', expires: '9999-12-31T23:59:59.999Z', hashes: { sha256: sha256Hex(data) } },
    ]);
    const start = await call('PUT', `/start-download/${enc(name)}`, { acceptDownloadMethods: { getUrl: true } }, 'reader-token');
    expect([start.status, start.body['method'], start.body['hashes']]).toEqual([200, 'getUrl', { sha256: sha256Hex(data) }]);
    const got = await fetch(start.body['url'] as string);
    expect([got.status, got.headers.get('content-type')]).toEqual([200, 'image/png']);
    expect(sha256Hex(Buffer.from(await got.arrayBuffer()))).toBe(sha256Hex(data));
    const script = join(__dirname, '..', '..', 'test', 'tc-client.mjs');
    const { stdout } = await run(process.execPath, [script, h.base, 'reader', 'reader-token', 'tus', name, '0', 'download-only']);
    expect(JSON.parse(stdout)).toMatchObject({ downloadedSha256: sha256Hex(data), contentType: 'image/png' });
  });

  it('serves its OpenAPI description, documenting every route it serves', async () => {
    const r = await fetch(`${h.base}/docs`);
    expect(r.status).toBe(200);
    const doc = (await r.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toMatch(/^3\./);
    const served = [
      'get /api/object/v1/ping',
      'put /api/object/v1/upload/{name}',
      'post /api/object/v1/finish-upload/{name}',
      'put /api/object/v1/start-download/{name}',
      'get /api/object/v1/metadata/{name}',
      'get /api/object/v1/download/{name}',
      'put /data/uploads/{uploadId}/{name}',
      'get /data/objects/{name}',
      'get /__heartbeat__',
      'get /__lbheartbeat__',
      'get /__version__',
      'get /api/object/v1/__heartbeat__',
      'get /api/object/v1/__lbheartbeat__',
      'get /api/object/v1/__version__',
      'get /healthz',
      'get /readyz',
      'get /metrics',
      'get /docs',
    ];
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => m !== 'parameters')
        .map((m) => `${m} ${path}`),
    );
    expect(documented.sort()).toEqual(served.sort());
    expect(await (await fetch(`${h.base}/nope`)).json()).toMatchObject({ code: 'ResourceNotFound' });
  });
});
