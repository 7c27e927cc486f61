import { UnauthenticatedError } from '@ferry/errors';
import { hawkHeader } from '@ferry/testing';
import { Authenticator } from './authenticator';
import { HawkRequest, NonceStore, parseHawkHeader } from './hawk';

/** Nonces in a Map: the Redis-backed store is tested with the apps. */
function memoryNonces(): NonceStore {
  const seen = new Set<string>();
  return {
    claim: async (key) => {
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
    const once = sign();
    await auth.authenticate(once, req, nonces);
    await fails(auth.authenticate(once, req, nonces), /replayed/);
    const unknown = hawkHeader(url, 'PUT', 'nobody', 'k');
    await fails(auth.authenticate(unknown, req, nonces), UnauthenticatedError as never);
  });

  it('honours Taskcluster authorizedScopes in ext and refuses temporary credentials', async () => {
    const nonces = memoryNonces();
    const ext = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64');
    const narrowed = await auth.authenticate(sign({ ext: ext({ authorizedScopes: ['object:upload:proj/a:*'] }) }), req, nonces);
    expect(narrowed.scopes).toEqual(['object:upload:proj/a:*']);
    await expect(auth.authenticate(sign({ ext: ext({ authorizedScopes: ['object:download:x'] }) }), req, nonces)).rejects.toThrow(/does not have/);
    await expect(auth.authenticate(sign({ ext: ext({ certificate: {} }) }), req, nonces)).rejects.toThrow(/temporary credentials/);
    await expect(auth.authenticate(sign({ ext: ext('text') }), req, nonces)).rejects.toThrow(/JSON object/);
  });

  it('parses strictly', () => {
    expect(parseHawkHeader('Bearer x')).toBeUndefined();
    expect(() => parseHawkHeader('Hawk id="a", ts="1", nonce="n"')).toThrow(/missing attribute mac/);
    expect(() => parseHawkHeader('Hawk id="a", ts="1", nonce="n", mac="m", zz="1"')).toThrow(/unknown attribute/);
    expect(() => parseHawkHeader('Hawk id="a", id="b", ts="1", nonce="n", mac="m"')).toThrow(/duplicate/);
    expect(() => parseHawkHeader('Hawk id="a" garbage')).toThrow(/malformed/);
  });
});
