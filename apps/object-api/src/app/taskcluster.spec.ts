import { execFile, spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REDIS, STORAGE } from '@ferry/core';
import { HawkAttributes, parseHawkHeader } from '@ferry/auth';
import { Redis, RedisKeys } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { eventually, hawkBewit, hawkHeader, sha256Hex } from '@ferry/testing';
import { ObjectHarness, startObjectApi } from '../testing/object.harness';

const run = promisify(execFile);

/**
 * What real Taskcluster clients do first, with the unmodified taskcluster-client (87.1.3) against a
 * real object-api: temporary credentials, bewit URLs (fetched as curl and browsers do), names of
 * every printable ASCII character, Taskcluster's validation codes, Dockerflow's heartbeat.
 */

const CLIENTS = [
  { clientId: 'issuer', accessToken: 'issuer-token', scopes: ['object:upload:proj/*', 'object:download:*', 'auth:create-client:task/*'] },
  { clientId: 'narrow', accessToken: 'narrow-token', scopes: ['object:download:*'] },
];
const issuer = { clientId: 'issuer', accessToken: 'issuer-token' };
const narrow = { clientId: 'narrow', accessToken: 'narrow-token' };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

type Result = { ok?: unknown; error?: { statusCode?: number; code?: string; message: string } };

/** A call of tc-calls.mjs (see there): credentials or temporary credentials, and one operation. */
type Call = Record<string, unknown>;

describe('object-api with real Taskcluster clients (taskcluster-client 87.1.3)', () => {
  let h: ObjectHarness;

  beforeAll(async () => {
    h = await startObjectApi({ FERRY_CLIENTS: JSON.stringify(CLIENTS) });
  });

  afterAll(async () => {
    await h.close();
  });

  /** Runs calls with the real client, in one process; one result per call. */
  async function tc(calls: Call[]): Promise<Result[]> {
    const script = join(__dirname, '..', '..', 'test', 'tc-calls.mjs');
    const { stdout } = await run(process.execPath, [script, JSON.stringify({ rootUrl: h.base, calls })], { maxBuffer: 16 * 1024 * 1024 });
    return JSON.parse(stdout) as Result[];
  }

  const temporary = (t: Record<string, unknown>) => ({ temporary: { issuer, start: 0, expiry: HOUR, ...t } });
  const metadata = (name: string) => ({ op: 'api', method: 'object', args: [name] });
  const failure = (statusCode: number, code: string, message = /./) => ({
    error: { statusCode, code, message: expect.stringMatching(message) },
  });

  /** GET as curl does: the target exactly as in the URL, following redirects; status and body of the last answer. */
  function rawGet(url: string, hops = 3): Promise<{ status: number; body: Buffer; location?: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(url, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const location = res.headers.location;
          if (status >= 300 && status < 400 && location && hops > 0) resolve(rawGet(new URL(location, url).toString(), hops - 1));
          else resolve({ status, body: Buffer.concat(chunks), location });
        });
      });
      req.on('error', reject);
      req.end();
    });
  }

  const curlInstalled = spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;
  /** `curl -sL` of the URL: the bytes it saves, or its HTTP status when that is not 200. */
  async function curl(url: string): Promise<{ status: number; body: Buffer }> {
    const { stdout } = await promisify(execFile)('curl', ['-sS', '-L', '-o', '-', '-w', '\n%{http_code}', url], {
      encoding: 'buffer',
      maxBuffer: 16 * 1024 * 1024,
    });
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.subarray(cut + 1).toString()), body: stdout.subarray(0, cut) };
  }

  it('accepts temporary credentials as tasks and workers hold them: unnamed and named, with and without authorizedScopes', async () => {
    const name = 'tc/temporary object.bin';
    const unnamed = temporary({ scopes: ['object:upload:proj/tc:tc/*', 'object:download:tc/*'] });
    const named = temporary({ clientId: 'task/T1', scopes: ['object:download:tc/*'] });
    const results = await tc([
      // unnamed: upload() and download() helpers, putUrl and dataInline both
      { ...unnamed, op: 'upload', projectId: 'proj/tc', name, size: 20_000 },
      { ...unnamed, op: 'download', name },
      { ...unnamed, op: 'upload', projectId: 'proj/tc', name: 'tc/small', size: 10 },
      // the certificate's scopes, not the issuer's, are what the request holds
      { ...unnamed, ...metadata('other/name') },
      // named: its own clientId, the certificate's scopes
      { ...named, ...metadata(name) },
      { ...named, op: 'download', name },
      {
        ...named,
        op: 'api',
        method: 'createUpload',
        args: [
          'tc/by-named',
          {
            projectId: 'proj/tc',
            uploadId: 'AAAAAAAAQAKAAAAAAAAAAA',
            expires: new Date(Date.now() + DAY).toISOString(),
            proposedUploadMethods: {},
          },
        ],
      },
      // authorizedScopes narrow further, and must be covered by the certificate
      { ...unnamed, authorizedScopes: [`object:download:${name}`], ...metadata(name) },
      { ...unnamed, authorizedScopes: [`object:download:${name}`], ...metadata('tc/small') },
      { ...named, authorizedScopes: ['object:download:tc/small'], ...metadata('tc/small') },
      { ...named, authorizedScopes: ['object:download:other/*'], ...metadata('tc/small') },
      // permanent credentials with authorizedScopes too
      { credentials: narrow, authorizedScopes: ['object:download:tc/small'], ...metadata('tc/small') },
      { credentials: narrow, authorizedScopes: ['object:download:tc/small'], ...metadata(name) },
    ]);
    const uploaded = results[0].ok as { sha256: string };
    expect(results[0]).toEqual({ ok: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(results[1]).toEqual({ ok: { sha256: uploaded.sha256, contentType: 'application/x-test' } });
    expect(results[2]).toEqual({ ok: expect.any(Object) });
    expect(results[3]).toEqual(failure(403, 'InsufficientScopes', /client issuer lacks scope object:download:other\/name/));
    expect(results[4]).toEqual({
      ok: { projectId: 'proj/tc', expires: expect.any(String), hashes: { sha256: uploaded.sha256, sha512: expect.any(String) } },
    });
    expect(results[5]).toEqual({ ok: { sha256: uploaded.sha256, contentType: 'application/x-test' } });
    expect(results[6]).toEqual(failure(403, 'InsufficientScopes', /client task\/T1 lacks scope object:upload:proj\/tc:tc\/by-named/));
    expect(results[7]).toEqual({ ok: expect.objectContaining({ projectId: 'proj/tc' }) });
    expect(results[8]).toEqual(failure(403, 'InsufficientScopes', /lacks scope object:download:tc\/small/));
    expect(results[9]).toEqual({ ok: expect.objectContaining({ projectId: 'proj/tc' }) });
    expect(results[10]).toEqual(
      failure(
        401,
        'AuthenticationFailed',
        /authorizedScopes asks for object:download:other\/\*, which the credentials of task\/T1 do not have/,
      ),
    );
    expect(results[11]).toEqual({ ok: expect.objectContaining({ projectId: 'proj/tc' }) });
    expect(results[12]).toEqual(failure(403, 'InsufficientScopes'));
  });

  it('refuses expired, not yet started, too long, tampered and over-scoped certificates, and names an issuer may not create (401, saying which)', async () => {
    const scopes = ['object:download:*'];
    const results = await tc([
      { ...temporary({ scopes, start: -2 * HOUR, expiry: -HOUR }), ...metadata('x') },
      { ...temporary({ scopes, start: HOUR, expiry: 2 * HOUR }), ...metadata('x') },
      { ...temporary({ scopes, start: -HOUR, expiry: HOUR, tamper: { expiry: Date.now() + 31 * DAY }, resign: true }), ...metadata('x') },
      { ...temporary({ scopes: ['object:download:public/*'], tamper: { scopes: ['object:download:*'] } }), ...metadata('x') },
      { ...temporary({ scopes, tamper: { expiry: Date.now() + 2 * HOUR } }), ...metadata('x') },
      { ...temporary({ scopes: ['object:download:*', 'queue:create-task:*'] }), ...metadata('x') },
      { temporary: { issuer: narrow, clientId: 'task/T2', scopes, start: 0, expiry: HOUR }, ...metadata('x') },
    ]);
    expect(results).toEqual([
      failure(401, 'AuthenticationFailed', /^temporary credentials expired at /),
      failure(401, 'AuthenticationFailed', /^temporary credentials are not valid yet/),
      failure(401, 'AuthenticationFailed', /cannot last longer than 31 days/),
      failure(401, 'AuthenticationFailed', /ext\.certificate\.signature is not valid \(tampered/),
      failure(401, 'AuthenticationFailed', /ext\.certificate\.signature is not valid \(tampered/),
      failure(
        401,
        'AuthenticationFailed',
        /issuer issuer does not have the certificate's scopes queue:create-task:\* \(over-scoped certificate\)/,
      ),
      failure(401, 'AuthenticationFailed', /issuer narrow lacks scope auth:create-client:task\/T2/),
    ]);
  });

  it('serves bewit URLs of download and metadata (buildSignedUrl) to plain GETs, curl -L included, until they expire', async () => {
    const name = 'tc/signed download.txt';
    const [uploaded, downloadUrl, metadataUrl, temporaryUrl, shortUrl] = await tc([
      { credentials: issuer, op: 'upload', projectId: 'proj/tc', name, size: 5000 },
      { credentials: issuer, op: 'signedUrl', method: 'download', args: [name] },
      { credentials: issuer, op: 'signedUrl', method: 'object', args: [name] },
      // temporary credentials and authorizedScopes travel in the bewit's ext
      {
        ...temporary({ clientId: 'task/T3', scopes: ['object:download:tc/*'] }),
        authorizedScopes: [`object:download:${name}`],
        op: 'signedUrl',
        method: 'download',
        args: [name],
      },
      { credentials: issuer, op: 'signedUrl', method: 'object', args: [name], expiration: 1 },
    ]);
    const sha256 = (uploaded.ok as { sha256: string }).sha256;
    const url = String(downloadUrl.ok);
    expect(url).toMatch(/\/api\/object\/v1\/download\/tc%2Fsigned%20download\.txt\?bewit=/);
    // the download answers 303 to the signed data plane, which a client follows without credentials
    const redirect = await fetch(url, { redirect: 'manual' });
    expect([redirect.status, redirect.headers.get('location')]).toEqual([303, expect.stringContaining('/data/objects/')]);
    expect(sha256Hex(Buffer.from(await (await fetch(url)).arrayBuffer()))).toBe(sha256);
    expect(sha256Hex((await rawGet(url)).body)).toBe(sha256);
    if (curlInstalled) {
      const saved = await curl(url);
      expect([saved.status, sha256Hex(saved.body)]).toEqual([200, sha256]);
    }
    // the link is a link: used again, still good
    expect(sha256Hex((await rawGet(url)).body)).toBe(sha256);
    expect(await (await fetch(String(metadataUrl.ok))).json()).toEqual({
      projectId: 'proj/tc',
      expires: expect.any(String),
      hashes: expect.objectContaining({ sha256 }),
    });
    expect(sha256Hex(Buffer.from(await (await fetch(String(temporaryUrl.ok))).arrayBuffer()))).toBe(sha256);

    // tampered: another name under the same bewit, or an altered bewit
    const other = url.replace('signed%20download', 'signed%20downloaf');
    const tampered = await fetch(other);
    expect([tampered.status, ((await tampered.json()) as { code: string }).code]).toEqual([401, 'AuthenticationFailed']);
    const bewit = new URL(url).searchParams.get('bewit') ?? '';
    const altered = url.replace(
      bewit,
      Buffer.from(
        Buffer.from(bewit, 'base64url')
          .toString()
          .replace(/\\(\d+)\\/, (_m, exp: string) => `\\${Number(exp) + 3600}\\`),
      ).toString('base64url'),
    );
    expect(await (await fetch(altered)).json()).toEqual({ code: 'AuthenticationFailed', message: expect.stringMatching(/bewit: bad mac/) });
    // expired: one signed (by the hawk library, as the client does) an hour ago for a minute, and the client's own 1-second one
    const stale = `${h.base}/api/object/v1/download/${encodeURIComponent(name)}?bewit=${hawkBewit(`${h.base}/api/object/v1/download/${encodeURIComponent(name)}`, 'issuer', 'issuer-token', { ttlSec: 60, clockOffsetMs: -HOUR })}`;
    expect(await (await fetch(stale)).json()).toEqual({
      code: 'AuthenticationFailed',
      message: expect.stringMatching(/bewit: expired at/),
    });
    await eventually(async () =>
      expect(await (await fetch(String(shortUrl.ok))).json()).toEqual({
        code: 'AuthenticationFailed',
        message: expect.stringMatching(/bewit: expired at/),
      }),
    );
    // a bewit does not go with an Authorization header
    const both = await fetch(String(metadataUrl.ok), { headers: { authorization: 'Bearer issuer-token' } });
    expect([both.status, ((await both.json()) as { message: string }).message]).toEqual([401, expect.stringMatching(/not both/)]);
  });

  it("uploads, describes and downloads names of every printable ASCII character, by the client's helpers and by bewit URLs", async () => {
    let every = '';
    for (let c = 0x20; c <= 0x7e; c++) every += String.fromCharCode(c);
    const names = [
      every,
      'dir/my file (1).txt',
      'a+b&c=d;e,f',
      '100% done',
      'hash#tag',
      'what?',
      "it's",
      "'quoted'",
      'bang!',
      'star*',
      'tilde~',
      ' spaces at both ends ',
      'back\\slash',
      'quote"s <tags> {braces} |pipe| ^caret `tick`',
      '%2F%41 looks encoded',
      'x/../y',
      'a//b',
      '[brackets]@:$',
    ];
    const calls: Call[] = [];
    for (const [i, name] of names.entries()) {
      // small ones go dataInline, every third one through a putUrl
      calls.push({ credentials: issuer, op: 'upload', projectId: 'proj/tc', name, size: i % 3 === 0 ? 9000 : 100 + i });
      calls.push({ credentials: issuer, ...metadata(name) });
      calls.push({ credentials: issuer, op: 'api', method: 'startDownload', args: [name, { acceptDownloadMethods: { getUrl: true } }] });
      calls.push({ credentials: issuer, op: 'download', name });
      calls.push({ credentials: issuer, op: 'signedUrl', method: 'download', args: [name] });
      calls.push({ credentials: issuer, op: 'signedUrl', method: 'object', args: [name] });
    }
    const results = await tc(calls);
    for (const [i, name] of names.entries()) {
      const [upload, meta, start, download, downloadUrl, metadataUrl] = results.slice(6 * i, 6 * i + 6);
      const sha256 = (upload.ok as { sha256: string } | undefined)?.sha256;
      expect({ name, upload }).toEqual({ name, upload: { ok: { sha256: expect.any(String) } } });
      expect({ name, meta }).toEqual({ name, meta: { ok: expect.objectContaining({ hashes: expect.objectContaining({ sha256 }) }) } });
      expect({ name, start }).toEqual({ name, start: { ok: expect.objectContaining({ method: 'getUrl' }) } });
      expect({ name, download }).toEqual({ name, download: { ok: { sha256, contentType: 'application/x-test' } } });
      expect({ name, bewit: sha256Hex((await rawGet(String(downloadUrl.ok))).body) }).toEqual({ name, bewit: sha256 });
      expect({ name, metadata: JSON.parse((await rawGet(String(metadataUrl.ok))).body.toString()) }).toEqual({
        name,
        metadata: expect.objectContaining({ hashes: expect.objectContaining({ sha256 }) }),
      });
    }
  });

  it("answers Taskcluster's codes for invalid requests: InputValidationError for the body (dataInline past 8 KiB), InvalidRequestArguments for the name", async () => {
    const upload = (objectData: string) => ({
      projectId: 'proj/tc',
      uploadId: 'AAAAAAAAQAKAAAAAAAAAAA',
      expires: new Date(Date.now() + DAY).toISOString(),
      proposedUploadMethods: { dataInline: { contentType: 'x/y', objectData } },
    });
    const results = await tc([
      { credentials: issuer, op: 'api', method: 'createUpload', args: ['tc/inline-big', upload(Buffer.alloc(8193).toString('base64'))] },
      { credentials: issuer, op: 'api', method: 'createUpload', args: ['tc/inline-max', upload(Buffer.alloc(8192, 1).toString('base64'))] },
      { credentials: issuer, ...metadata('héllo') },
      { credentials: issuer, ...metadata('tab\there') },
      { credentials: issuer, op: 'api', method: 'createUpload', args: ['tc/bad-body', { ...upload('AA=='), projectId: 'bad project' }] },
    ]);
    expect(results).toEqual([
      failure(400, 'InputValidationError', /dataInline\.objectData: decodes to 8193 bytes; at most 8192/),
      { ok: expect.objectContaining({ uploadMethod: { dataInline: true } }) },
      failure(400, 'InvalidRequestArguments', /URL parameter 'name' given as "héllo"/),
      failure(400, 'InvalidRequestArguments', /printable ASCII/),
      failure(400, 'InputValidationError', /projectId/),
    ]);
    // the name is checked before the credentials, as Taskcluster checks URL parameters first
    const anonymous = await fetch(`${h.base}/api/object/v1/metadata/${encodeURIComponent('é')}`);
    expect([anonymous.status, ((await anonymous.json()) as { code: string }).code]).toEqual([400, 'InvalidRequestArguments']);
  });

  it("accepts Hawk timestamps within 15 minutes (Taskcluster's skew) and remembers their nonces in Redis only while they are acceptable", async () => {
    const url = `${h.base}/api/object/v1/metadata/${encodeURIComponent('tc/small')}`;
    const at = (offsetS: number) =>
      hawkHeader(url, 'GET', 'narrow', 'narrow-token', { timestamp: Math.floor(Date.now() / 1000) + offsetS });
    expect((await fetch(url, { headers: { authorization: at(-600) } })).status).toBe(200);
    expect((await fetch(url, { headers: { authorization: at(600) } })).status).toBe(200);
    const stale = await fetch(url, { headers: { authorization: at(-1000) } });
    expect([stale.status, ((await stale.json()) as { message: string }).message]).toEqual([401, expect.stringMatching(/stale timestamp/)]);
    // each nonce lives until its timestamp leaves the window: ts + 15 min
    const redis = h.app.get<Redis>(REDIS);
    const ttlOf = async (offsetS: number) => {
      const header = at(offsetS);
      expect((await fetch(url, { headers: { authorization: header } })).status).toBe(200);
      const { id, ts, nonce } = parseHawkHeader(header) as HawkAttributes;
      return redis.ttl(h.app.get(RedisKeys).hawkNonce(`${id}\n${ts}\n${nonce}`));
    };
    const past = await ttlOf(-600);
    expect([past > 250, past <= 302]).toEqual([true, true]);
    const ahead = await ttlOf(600);
    expect([ahead > 1450, ahead <= 1502]).toEqual([true, true]);
  });

  it('answers the Dockerflow heartbeat after checking Redis and storage: 503 saying which when one does not answer', async () => {
    const [viaClient] = await tc([{ credentials: issuer, op: 'api', method: 'heartbeat', args: [] }]);
    expect(viaClient).toEqual({ ok: { redis: 'ok', storage: 'ok' } });
    expect(await (await fetch(`${h.base}/__heartbeat__`)).json()).toEqual({ redis: 'ok', storage: 'ok' });
    const storage = h.app.get<Storage>(STORAGE);
    const broken = jest.spyOn(storage, 'check').mockRejectedValue(new Error('disk gone'));
    try {
      const res = await fetch(`${h.base}/__heartbeat__`);
      expect([res.status, await res.json()]).toEqual([
        503,
        { code: 'ServiceUnavailable', message: expect.stringMatching(/storage: unavailable/), redis: 'ok', storage: 'unavailable' },
      ]);
    } finally {
      broken.mockRestore();
    }
    // Redis down: an app of its own, whose Redis is stopped
    const lonely = await startObjectApi({ FERRY_CLIENTS: JSON.stringify(CLIENTS) });
    try {
      expect((await fetch(`${lonely.base}/__heartbeat__`)).status).toBe(200);
      await lonely.redis.stop();
      // (the connection learns that its server is gone when it next uses it, or soon after)
      await eventually(async () => {
        const res = await fetch(`${lonely.base}/api/object/v1/__heartbeat__`);
        expect([res.status, await res.json()]).toEqual([
          503,
          {
            code: 'ServiceUnavailable',
            message: expect.stringMatching(/redis: unavailable, storage: ok/),
            redis: 'unavailable',
            storage: 'ok',
          },
        ]);
      });
      expect((await fetch(`${lonely.base}/__lbheartbeat__`)).status).toBe(200);
    } finally {
      await lonely.close();
    }
  });
});
