import { parse as legacyParse } from 'node:url';
import * as hawk from 'hawk';
import { UnauthenticatedError } from '@ferry/errors';
import { hawkBewit, hawkHeader } from '@ferry/testing';
import { Authenticator } from './authenticator';
import { HAWK_SKEW_SECONDS, HawkRequest, NonceStore, hawkPayloadHash, parseHawkHeader, signedTargets, splitBewit } from './hawk';

/** The hawk client's header() with a payload, which it hashes into `hash` (the declaration in @ferry/testing leaves these options out). */
const headerWithPayload = hawk.client.header as unknown as (
  uri: string,
  method: string,
  options: { credentials: { id: string; key: string; algorithm: 'sha256' }; payload: string; contentType?: string },
) => { header: string };

/** Nonces in a Map (with the lifetime each was claimed for): the Redis-backed store is tested with the apps. */
function memoryNonces(): NonceStore & { ttls: number[] } {
  const seen = new Set<string>();
  const ttls: number[] = [];
  return {
    ttls,
    claim: async (key, ttlSeconds) => {
      ttls.push(ttlSeconds);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    },
  };
}

describe('Hawk (against the hawk client library Taskcluster clients use)', () => {
  const auth = new Authenticator([{ clientId: 'tc-client', accessToken: 'tc-access-token', scopes: ['object:upload:*'] }]);
  const url = 'http://127.0.0.1:8080/api/object/v1/upload/some%20name?x=1';
  const req: HawkRequest = { method: 'PUT', resource: '/api/object/v1/upload/some%20name?x=1', host: '127.0.0.1', port: 8080 };
  const sign = (opts: { key?: string; ts?: number; ext?: string; method?: string } = {}) =>
    hawkHeader(url, opts.method ?? 'PUT', 'tc-client', opts.key ?? 'tc-access-token', { ext: opts.ext, timestamp: opts.ts });

  it('accepts what the hawk client signs, with and without ext', async () => {
    const nonces = memoryNonces();
    expect((await auth.authenticate(sign(), req, nonces)).clientId).toBe('tc-client');
    expect((await auth.authenticate(sign({ ext: Buffer.from('{}').toString('base64') }), req, nonces)).scopes).toEqual(['object:upload:*']);
    // bearer tokens still work through the same entry point
    expect((await auth.authenticate('Bearer tc-access-token', req, nonces)).clientId).toBe('tc-client');
  });

  it('refuses a wrong key, another method, path, host or port, a stale timestamp and a replay', async () => {
    const nonces = memoryNonces();
    const fails = (p: Promise<unknown>, why: RegExp) => expect(p).rejects.toThrow(why);
    await fails(auth.authenticate(sign({ key: 'wrong' }), req, nonces), /bad mac/);
    await fails(auth.authenticate(sign({ method: 'GET' }), req, nonces), /bad mac/);
    await fails(auth.authenticate(sign(), { ...req, resource: '/api/object/v1/upload/other' }, nonces), /bad mac/);
    await fails(auth.authenticate(sign(), { ...req, host: 'evil.example' }, nonces), /bad mac/);
    await fails(auth.authenticate(sign(), { ...req, port: 80 }, nonces), /bad mac/);
    await fails(auth.authenticate(sign({ ts: Math.floor(Date.now() / 1000) - 3600 }), req, nonces), /stale timestamp/);
    await fails(auth.authenticate(sign({ ts: Math.floor(Date.now() / 1000) + HAWK_SKEW_SECONDS + 60 }), req, nonces), /stale timestamp/);
    const once = sign();
    await auth.authenticate(once, req, nonces);
    await fails(auth.authenticate(once, req, nonces), /replayed/);
    const unknown = hawkHeader(url, 'PUT', 'nobody', 'k');
    await fails(auth.authenticate(unknown, req, nonces), UnauthenticatedError as never);
  });

  it('checks a payload hash against the body, as Taskcluster does; a request without one is not asked for it', async () => {
    const nonces = memoryNonces();
    const body = '{"projectId":"proj/a","expires":"2030-01-01T00:00:00.000Z"}';
    const credentials = { id: 'tc-client', key: 'tc-access-token', algorithm: 'sha256' as const };
    const signed = (payload: string, contentType: string) => headerWithPayload(url, 'PUT', { credentials, payload, contentType }).header;
    const withBody = (payload: string, contentType = 'application/json'): HawkRequest => ({
      ...req,
      contentType,
      payload: Buffer.from(payload),
    });
    // the content type counts without its parameters, in any case
    expect(
      (await auth.authenticate(signed(body, 'application/json'), withBody(body, 'Application/JSON; charset=utf-8'), nonces)).clientId,
    ).toBe('tc-client');
    // the same hash as the hawk client's
    expect(parseHawkHeader(signed(body, 'application/json'))?.hash).toBe(hawkPayloadHash(Buffer.from(body), 'application/json'));
    // a body the server did not read (none, or not JSON) is the empty payload
    expect((await auth.authenticate(signed('', 'text/plain'), { ...req, contentType: 'text/plain' }, nonces)).clientId).toBe('tc-client');
    const fails = (p: Promise<unknown>) => expect(p).rejects.toThrow(/Hawk: invalid payload hash .*, computed /);
    await fails(auth.authenticate(signed(body, 'application/json'), withBody(body.replace('proj/a', 'proj/b')), nonces));
    await fails(auth.authenticate(signed(body, 'application/json'), withBody(body, 'text/json'), nonces));
    await fails(auth.authenticate(signed(body, 'application/json'), { ...req, contentType: 'application/json' }, nonces));
    // no hash sent: the body is not checked (Hawk's hash is optional, and Taskcluster's clients leave it out)
    expect((await auth.authenticate(sign(), withBody('anything'), nonces)).clientId).toBe('tc-client');
  });

  it('accepts the MAC for any endpoint the request may have been signed for (alsoSignedFor)', async () => {
    const nonces = memoryNonces();
    const publicUrl = 'https://ferry.example.com/api/object/v1/upload/some%20name?x=1';
    const header = () => hawkHeader(publicUrl, 'PUT', 'tc-client', 'tc-access-token');
    const others = [
      { host: 'elsewhere.example.com', port: 443 },
      { host: 'ferry.example.com', port: 443 },
    ];
    expect((await auth.authenticate(header(), { ...req, alsoSignedFor: others }, nonces)).clientId).toBe('tc-client');
    await expect(auth.authenticate(header(), { ...req, alsoSignedFor: [others[0]] }, nonces)).rejects.toThrow(/bad mac/);
    await expect(
      auth.authenticate(header(), { ...req, alsoSignedFor: [{ host: 'ferry.example.com', port: 8443 }] }, nonces),
    ).rejects.toThrow(/bad mac/);
  });

  it("accepts timestamps within Taskcluster's 15 minutes of skew, and remembers each nonce exactly while its timestamp is acceptable", async () => {
    const nonces = memoryNonces();
    const now = Date.now();
    const nowS = Math.floor(now / 1000);
    for (const ts of [nowS - HAWK_SKEW_SECONDS + 5, nowS, nowS + HAWK_SKEW_SECONDS - 5]) {
      expect((await auth.authenticate(sign({ ts }), req, nonces, now)).clientId).toBe('tc-client');
    }
    // a request is acceptable until ts + skew: its nonce lives that long (a second more), not longer
    expect(nonces.ttls).toEqual([6, HAWK_SKEW_SECONDS + 1, 2 * HAWK_SKEW_SECONDS - 4].map((ttl) => expect.closeTo(ttl, 0)));
  });

  it('honours Taskcluster authorizedScopes in ext', async () => {
    const nonces = memoryNonces();
    const ext = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64');
    const narrowed = await auth.authenticate(sign({ ext: ext({ authorizedScopes: ['object:upload:proj/a:*'] }) }), req, nonces);
    expect(narrowed.scopes).toEqual(['object:upload:proj/a:*']);
    await expect(auth.authenticate(sign({ ext: ext({ authorizedScopes: ['object:download:x'] }) }), req, nonces)).rejects.toThrow(
      /asks for object:download:x, which the credentials of tc-client do not have/,
    );
    await expect(auth.authenticate(sign({ ext: ext({ certificate: {} }) }), req, nonces)).rejects.toThrow(/certificate\.version must be 1/);
    await expect(auth.authenticate(sign({ ext: ext('text') }), req, nonces)).rejects.toThrow(/JSON object/);
  });

  it('verifies a MAC over the target as the hawk client signed it, for names of every printable ASCII character', async () => {
    // taskcluster-client encodes a name with encodeURIComponent, the hawk client signs
    // url.parse(url).pathname (legacy parser), got sends the WHATWG URL's path
    let all = '';
    for (let c = 0x20; c <= 0x7e; c++) all += String.fromCharCode(c);
    const names = [all, "it's", "a'b'c", 'dir/my file (1).txt', 'a+b&c=d;e,f', '%25#?!*~'];
    const nonces = memoryNonces();
    for (const name of names) {
      const signedUrl = `http://127.0.0.1:8080/api/object/v1/metadata/${encodeURIComponent(name)}`;
      const sent = new URL(signedUrl).pathname;
      const header = hawkHeader(signedUrl, 'GET', 'tc-client', 'tc-access-token');
      expect((await auth.authenticate(header, { method: 'GET', resource: sent, host: '127.0.0.1', port: 8080 }, nonces)).clientId).toBe(
        'tc-client',
      );
    }
    // the legacy form of any target: what url.parse makes of it
    for (let c = 0x20; c <= 0x7e; c++) {
      const ch = String.fromCharCode(c);
      if (ch === '#' || ch === '?') continue;
      const target = `/a${ch}b?q${ch}r`;
      const legacy = legacyParse(`http://h${target}`);
      expect(signedTargets(target)).toContain(`${legacy.pathname}${legacy.search}`);
    }
    expect(signedTargets('/plain/%27')).toEqual(['/plain/%27']);
  });

  it('accepts bewits as the hawk client makes them, until they expire, for the URL they sign only', async () => {
    const getUrl = 'http://127.0.0.1:8080/api/object/v1/download/some%20name';
    const target = '/api/object/v1/download/some%20name';
    const get = (resource: string, method = 'GET', header?: string) =>
      auth.authenticate(header, { method, resource, host: '127.0.0.1', port: 8080 }, memoryNonces());
    const bewit = hawkBewit(getUrl, 'tc-client', 'tc-access-token', { ttlSec: 60 });
    expect((await get(`${target}?bewit=${bewit}`)).clientId).toBe('tc-client');
    expect((await get(`${target}?bewit=${bewit}`, 'HEAD')).clientId).toBe('tc-client');
    // used again: a bewit is a link, good until it expires
    expect((await get(`${target}?bewit=${bewit}`)).clientId).toBe('tc-client');
    await expect(
      get(`${target}?bewit=${hawkBewit(getUrl, 'tc-client', 'tc-access-token', { ttlSec: 60, clockOffsetMs: -120_000 })}`),
    ).rejects.toThrow(/bewit: expired at/);
    await expect(get(`/api/object/v1/download/other?bewit=${bewit}`)).rejects.toThrow(/bewit: bad mac/);
    await expect(get(`${target}?bewit=${bewit.slice(0, -2)}`)).rejects.toThrow(/bewit/);
    await expect(get(`${target}?bewit=${hawkBewit(getUrl, 'tc-client', 'wrong', { ttlSec: 60 })}`)).rejects.toThrow(/bewit: bad mac/);
    await expect(get(`${target}?bewit=${bewit}`, 'PUT')).rejects.toThrow(/only GET and HEAD/);
    await expect(get(`${target}?bewit=${bewit}`, 'GET', 'Bearer tc-access-token')).rejects.toThrow(/not both/);
    await expect(get(`${target}?bewit=`)).rejects.toThrow(/bewit: empty/);
    await expect(get(`${target}?bewit=${bewit}&bewit=${bewit}`)).rejects.toThrow(/more than one/);
    // other query parameters are signed with the URL
    const withQuery = hawkBewit(`${getUrl}?a=1`, 'tc-client', 'tc-access-token', { ttlSec: 60 });
    expect((await get(`${target}?a=1&bewit=${withQuery}`)).clientId).toBe('tc-client');
    await expect(get(`${target}?a=2&bewit=${withQuery}`)).rejects.toThrow(/bad mac/);
    expect(splitBewit('/p?a=1&bewit=X&b=2')).toEqual({ bewit: 'X', resource: '/p?a=1&b=2' });
    expect(splitBewit('/p?&bewit=X')).toEqual({ bewit: 'X', resource: '/p?' });
    expect(splitBewit('/p?bewitness=1')).toBeUndefined();
  });

  it('parses strictly', () => {
    expect(parseHawkHeader('Bearer x')).toBeUndefined();
    expect(() => parseHawkHeader('Hawk id="a", ts="1", nonce="n"')).toThrow(/missing attribute mac/);
    expect(() => parseHawkHeader('Hawk id="a", ts="1", nonce="n", mac="m", zz="1"')).toThrow(/unknown attribute/);
    expect(() => parseHawkHeader('Hawk id="a", id="b", ts="1", nonce="n", mac="m"')).toThrow(/duplicate/);
    expect(() => parseHawkHeader('Hawk id="a" garbage')).toThrow(/malformed/);
  });
});
