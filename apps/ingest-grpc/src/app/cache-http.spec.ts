import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type { ActionResult, ActionResult__Output } from '@ferry/protocol';
import { messageCodec } from '@ferry/protocol';
import { REDIS } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { ReapiClients, bearer, expectGrpcCode, jsonOf, readBytes, reapiClients, request, unaryCall, uploadBytes } from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;
const FULL = 'full-token-123';
const READER = 'reader-token-123';
const results = messageCodec<ActionResult, ActionResult__Output>('build.bazel.remote.execution.v2.ActionResult');

/**
 * Bazel's HTTP cache protocol on FERRY_CACHE_HTTP_PORT, with real HTTP requests over sockets, a
 * private Redis and disk; checked against the gRPC face, which shares its stores.
 */
describe("Bazel's HTTP cache protocol", () => {
  let h: IngestHarness;
  let r: ReapiClients;
  const auth = (token = FULL) => ({ authorization: `Bearer ${token}` });
  const url = (path: string) => `${h.httpCache}${path}`;
  const put = (path: string, body: Buffer | Readable, headers: Record<string, string | number> = {}) =>
    request(url(path), {
      method: 'PUT',
      headers: { ...auth(), ...(Buffer.isBuffer(body) ? { 'content-length': body.length } : {}), ...headers },
      body,
    });
  const get = (path: string, token = FULL) => request(url(path), { headers: auth(token) });
  const head = (path: string, token = FULL) => request(url(path), { method: 'HEAD', headers: auth(token) });
  /** Upload sessions of HTTP cache PUTs still known (the index of every session: one key, also on a cluster). */
  const httpCacheSessions = async () =>
    (await h.app.get<Redis>(REDIS).zrange(h.app.get(RedisKeys).uploadsByActivity(), 0, -1)).filter((id) => id.startsWith('hc_'));
  const staged = () => readdirSync(join(h.data.path, 'staging'), { withFileTypes: true }).map((e) => e.name);

  beforeAll(async () => {
    h = await startIngest({
      FERRY_REAPI_INSTANCES: ',main,team/ci',
      FERRY_CAS_MAX_BLOB_BYTES: String(64 * MiB),
      FERRY_CLIENTS: JSON.stringify([
        { clientId: 'full', accessToken: FULL, scopes: ['ferry:read:*', 'ferry:write:*'] },
        { clientId: 'reader', accessToken: READER, scopes: ['ferry:read:main/*'] },
      ]),
      FERRY_ANONYMOUS_SCOPES: 'ferry:read:team/ci/blobs/*',
    });
    r = reapiClients(h.address);
  });

  afterAll(async () => {
    r.close();
    await h.close();
  });

  describe('CAS', () => {
    it.each([
      ['small, taken whole', 1000],
      ['large, streamed', 5 * MiB + 3],
    ])('stores a blob PUT (%s), answers HEAD and GET, and serves it over ByteStream', async (_, size) => {
      const blob = randomBytes(size);
      expect((await head(`/main/cas/${sha(blob)}`)).status).toBe(404);
      expect((await put(`/main/cas/${sha(blob)}`, blob)).status).toBe(200);
      const probe = await head(`/main/cas/${sha(blob)}`);
      expect({ status: probe.status, length: probe.headers['content-length'], body: probe.body.length }).toEqual({
        status: 200,
        length: String(size),
        body: 0,
      });
      const got = await get(`/main/cas/${sha(blob)}`);
      expect(got.status).toBe(200);
      expect(got.headers['content-length']).toBe(String(size));
      expect(sha(got.body)).toBe(sha(blob));
      // the same CAS object as a ByteStream upload's, shared by every instance
      expect(sha((await readBytes(h.client, `blobs/${sha(blob)}/${size}`, { metadata: bearer(FULL) })).data)).toBe(sha(blob));
      expect(sha((await get(`/cas/${sha(blob)}`)).body)).toBe(sha(blob));
      expect(staged()).toEqual([]);
      expect(await httpCacheSessions()).toEqual([]);
    });

    it('serves over HTTP a blob written over ByteStream, and the empty blob always', async () => {
      const blob = randomBytes(3 * MiB);
      await uploadBytes(h.client, `main/uploads/u1/blobs/${sha(blob)}/${blob.length}`, blob, bearer(FULL));
      expect(sha((await get(`/main/cas/${sha(blob)}`)).body)).toBe(sha(blob));
      const empty = await get(`/cas/${sha(Buffer.alloc(0))}`);
      expect({ status: empty.status, length: empty.headers['content-length'] }).toEqual({ status: 200, length: '0' });
    });

    it.each([
      ['small', 2000],
      ['large', 3 * MiB],
    ])('refuses a %s body whose sha256 is not its key with 400, storing nothing', async (_, size) => {
      const blob = randomBytes(size);
      const claimed = sha(randomBytes(8));
      const res = await put(`/main/cas/${claimed}`, blob);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toBe('application/json');
      expect(jsonOf(res)).toEqual({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/digest mismatch.*sha256/) });
      expect((await head(`/main/cas/${claimed}`)).status).toBe(404);
      expect((await head(`/main/cas/${sha(blob)}`)).status).toBe(404);
      expect(staged()).toEqual([]);
      expect(await httpCacheSessions()).toEqual([]);
    });

    it('checks the body of a blob it already holds, and answers 200 without writing it again', async () => {
      const blob = randomBytes(4000);
      expect((await put(`/main/cas/${sha(blob)}`, blob)).status).toBe(200);
      expect((await put(`/main/cas/${sha(blob)}`, blob)).status).toBe(200);
      const forged = Buffer.from(blob);
      forged[0] ^= 1;
      expect((await put(`/main/cas/${sha(blob)}`, forged)).status).toBe(400);
      expect(sha((await get(`/main/cas/${sha(blob)}`)).body)).toBe(sha(blob));
    });

    it('keeps nothing of a PUT cut short, and a PUT without Content-Length or with a compressed body is refused', async () => {
      const blob = randomBytes(4 * MiB);
      const body = new Readable({ read: () => undefined });
      const cut = put(`/main/cas/${sha(blob)}`, body, { 'content-length': blob.length });
      body.push(blob.subarray(0, 2 * MiB));
      await new Promise((resolve) => setTimeout(resolve, 300));
      body.destroy(new Error('client gave up'));
      await expect(cut).rejects.toThrow();
      // the server notices the closed connection and drops the upload
      for (let i = 0; i < 50 && (staged().length > 0 || (await httpCacheSessions()).length > 0); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(staged()).toEqual([]);
      expect(await httpCacheSessions()).toEqual([]);
      expect((await head(`/main/cas/${sha(blob)}`)).status).toBe(404);

      const chunked = await put(`/main/cas/${sha(blob)}`, Readable.from([blob.subarray(0, 10)]));
      expect({ status: chunked.status, body: jsonOf(chunked) }).toEqual({
        status: 400,
        body: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/needs a Content-Length/) },
      });
      const zstd = await put(`/main/cas/${sha(blob)}`, blob.subarray(0, 10), { 'content-encoding': 'zstd' });
      expect(zstd.status).toBe(400);
      const tooLarge = await put(`/main/cas/${sha(blob)}`, Buffer.alloc(0), { 'content-length': 65 * MiB });
      expect({ status: tooLarge.status, body: jsonOf(tooLarge) }).toEqual({
        status: 400,
        body: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/exceeds max_cas_blob_size_bytes/) },
      });
      expect(tooLarge.headers['connection']).toBe('close');
    });

    it('answers a missing blob 404 with {code, message}, and HEAD of it 404 without a body', async () => {
      const missing = sha(randomBytes(5));
      const res = await get(`/main/cas/${missing}`);
      expect({ status: res.status, body: jsonOf(res) }).toEqual({
        status: 404,
        body: { code: 'NOT_FOUND', message: `blob ${missing} not found` },
      });
      const probe = await head(`/main/cas/${missing}`);
      expect({ status: probe.status, body: probe.body.length }).toEqual({ status: 404, body: 0 });
    });
  });

  describe('action cache', () => {
    const outputBlob = randomBytes(300);
    const resultOf = (blob: Buffer): ActionResult => ({
      output_files: [{ path: 'bazel-out/out.txt', digest: { hash: sha(blob), size_bytes: blob.length }, is_executable: false }],
      exit_code: 0,
      stdout_raw: Buffer.from('built'),
    });

    beforeAll(async () => {
      expect((await put(`/main/cas/${sha(outputBlob)}`, outputBlob)).status).toBe(200);
    });

    it('stores a serialized ActionResult PUT to /ac/, which GetActionResult answers, and the other way round', async () => {
      const action = randomBytes(50);
      const encoded = results.encode(resultOf(outputBlob));
      expect((await get(`/main/ac/${sha(action)}`)).status).toBe(404);
      expect((await put(`/main/ac/${sha(action)}`, encoded)).status).toBe(200);
      const got = await get(`/main/ac/${sha(action)}`);
      expect(got.status).toBe(200);
      expect(results.decode(got.body)).toEqual(results.decode(encoded));
      expect((await head(`/main/ac/${sha(action)}`)).headers['content-length']).toBe(String(got.body.length));
      const viaGrpc = await unaryCall<ActionResult__Output>(
        r.actionCache,
        'GetActionResult',
        { instance_name: 'main', action_digest: { hash: sha(action), size_bytes: action.length } },
        bearer(FULL),
      );
      expect(viaGrpc.output_files[0].digest).toEqual({ hash: sha(outputBlob), size_bytes: outputBlob.length });

      const other = randomBytes(60);
      await unaryCall(
        r.actionCache,
        'UpdateActionResult',
        { instance_name: 'team/ci', action_digest: { hash: sha(other), size_bytes: other.length }, action_result: resultOf(outputBlob) },
        bearer(FULL),
      );
      const fromGrpc = await get(`/team/ci/ac/${sha(other)}`);
      expect(fromGrpc.status).toBe(200);
      expect(results.decode(fromGrpc.body).stdout_raw.toString()).toBe('built');
      // instances namespace the action cache: the default instance and `main` do not have it
      expect((await get(`/ac/${sha(other)}`)).status).toBe(404);
      expect((await get(`/main/ac/${sha(other)}`)).status).toBe(404);
    });

    it('misses (404) a result whose outputs are gone, and refuses what is not an ActionResult or too large', async () => {
      const action = randomBytes(50);
      expect((await put(`/main/ac/${sha(action)}`, results.encode(resultOf(randomBytes(20))))).status).toBe(200);
      const miss = await get(`/main/ac/${sha(action)}`);
      expect({ status: miss.status, body: jsonOf(miss) }).toEqual({
        status: 404,
        body: { code: 'NOT_FOUND', message: expect.stringMatching(/refers to blobs that are gone/) },
      });
      const junk = await put(`/main/ac/${sha(action)}`, Buffer.from([0xff, 0xff, 0xff]));
      expect({ status: junk.status, body: jsonOf(junk) }).toEqual({
        status: 400,
        body: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not a serialized .*ActionResult/) },
      });
      const badDigest = results.encode({ output_files: [{ path: 'x', digest: { hash: 'short', size_bytes: 1 } }] });
      expect((await put(`/main/ac/${sha(action)}`, badDigest)).status).toBe(400);
      const huge = await put(`/main/ac/${sha(action)}`, Buffer.alloc(0), { 'content-length': 2 * MiB });
      expect({ status: huge.status, body: jsonOf(huge) }).toEqual({
        status: 400,
        body: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/keep outputs in the CAS/) },
      });
    });
  });

  describe('routes, instances and auth', () => {
    it('answers other routes 404, other methods 405, malformed keys and unknown instances 400', async () => {
      const hash = sha(randomBytes(4));
      const other = await get('/main/blobs/x');
      expect({ status: other.status, code: (jsonOf(other) as { code: string }).code }).toEqual({ status: 404, code: 'NOT_FOUND' });
      const del = await request(url(`/main/cas/${hash}`), { method: 'DELETE', headers: auth() });
      expect({ status: del.status, allow: del.headers['allow'] }).toEqual({ status: 405, allow: 'GET, HEAD, PUT' });
      const upper = await get(`/main/cas/${hash.toUpperCase()}`);
      expect({ status: upper.status, body: jsonOf(upper) }).toEqual({
        status: 400,
        body: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not a SHA-256/) },
      });
      const unknown = await get(`/elsewhere/cas/${hash}`);
      expect({ status: unknown.status, body: jsonOf(unknown) }).toEqual({
        status: 400,
        body: { code: 'INVALID_ARGUMENT', message: 'unknown instance name "elsewhere"' },
      });
      expect((await get(`/x/blobs/ac/${hash}`)).status).toBe(400); // a reserved segment
    });

    it('takes bearer tokens with the REAPI scopes, and FERRY_ANONYMOUS_SCOPES for requests without one', async () => {
      const blob = randomBytes(100);
      const wrong = await get(`/main/cas/${sha(blob)}`, 'wrong-token-1');
      expect({ status: wrong.status, body: jsonOf(wrong), challenge: wrong.headers['www-authenticate'] }).toEqual({
        status: 401,
        body: { code: 'UNAUTHENTICATED', message: 'invalid credentials' },
        challenge: 'Bearer',
      });
      // without credentials: the anonymous scopes, as on the gRPC face (here: reads of team/ci's CAS only)
      const anonymous = await request(url(`/main/cas/${sha(blob)}`));
      expect({ status: anonymous.status, body: jsonOf(anonymous) }).toEqual({
        status: 403,
        body: { code: 'PERMISSION_DENIED', message: `client anonymous lacks scope ferry:read:main/blobs/${sha(blob)}/*` },
      });
      // the reader may read instance main, not write it nor read another instance's action cache
      const refused = await put(`/main/cas/${sha(blob)}`, blob, auth(READER));
      expect({ status: refused.status, body: jsonOf(refused) }).toEqual({
        status: 403,
        body: { code: 'PERMISSION_DENIED', message: `client reader lacks scope ferry:write:main/blobs/${sha(blob)}/100` },
      });
      expect((await put(`/main/ac/${sha(blob)}`, results.encode({ exit_code: 0 }), auth(READER))).status).toBe(403);
      expect((await get(`/team/ci/ac/${sha(blob)}`, READER)).status).toBe(403);
      expect((await put(`/main/cas/${sha(blob)}`, blob)).status).toBe(200);
      expect((await get(`/main/cas/${sha(blob)}`, READER)).status).toBe(200);
      expect((await request(url(`/team/ci/cas/${sha(blob)}`))).status).toBe(200);
      expect((await request(url(`/team/ci/ac/${sha(blob)}`))).status).toBe(403);
    });
  });

  it('a NOT_FOUND over gRPC stays one for a blob only HTTP was asked for', async () => {
    const hash = sha(randomBytes(9));
    expect((await get(`/main/cas/${hash}`)).status).toBe(404);
    await expectGrpcCode(readBytes(h.client, `blobs/${hash}/9`, { metadata: bearer(FULL) }), grpc.status.NOT_FOUND);
  });
});
