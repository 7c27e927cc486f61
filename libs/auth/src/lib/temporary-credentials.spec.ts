import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { UnauthenticatedError } from '@ferry/errors';
import { hawkBewit, hawkHeader } from '@ferry/testing';
import { Authenticator } from './authenticator';
import { HawkRequest, NonceStore } from './hawk';
import { CERTIFICATE_SKEW_MS, parseExt, temporaryAccessToken } from './temporary-credentials';

const ROOT = join(__dirname, '..', '..', '..', '..');

interface TemporaryCredentials {
  clientId: string;
  accessToken: string;
  /** JSON, as the client returns it. */
  certificate: string;
}

interface CredentialsRequest {
  issuer: { clientId: string; accessToken: string };
  clientId?: string;
  scopes: string[];
  /** ms from now */
  start: number;
  expiry: number;
}

/** Temporary credentials made by the unmodified taskcluster-client (ESM, so in a process of its own). */
function createWithClient(requests: CredentialsRequest[]): TemporaryCredentials[] {
  const script = `
    import taskcluster from 'taskcluster-client';
    const now = Date.now();
    const requests = JSON.parse(process.argv[1]);
    console.log(JSON.stringify(requests.map((r) => taskcluster.createTemporaryCredentials({
      credentials: r.issuer, scopes: r.scopes, start: new Date(now + r.start), expiry: new Date(now + r.expiry),
      ...(r.clientId ? { clientId: r.clientId } : {}),
    }))));`;
  return JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(requests)], { cwd: ROOT }).toString(),
  ) as TemporaryCredentials[];
}

/** What taskcluster-client puts in Hawk's ext for these credentials (see its Client constructor). */
function extOf(creds: { certificate?: string | object }, authorizedScopes?: string[]): string {
  const ext: Record<string, unknown> = {};
  if (creds.certificate) ext['certificate'] = typeof creds.certificate === 'string' ? JSON.parse(creds.certificate) : creds.certificate;
  if (authorizedScopes) ext['authorizedScopes'] = authorizedScopes;
  return Buffer.from(JSON.stringify(ext)).toString('base64');
}

/** A certificate re-signed by the issuer after `change` (the client refuses to make some of these). */
function resigned(creds: TemporaryCredentials, issuerToken: string, change: (cert: Record<string, unknown>) => void): TemporaryCredentials {
  const cert = JSON.parse(creds.certificate) as Record<string, unknown> & { scopes: string[] };
  change(cert);
  const lines = ['version:1', ...(cert['issuer'] ? [`clientId:${creds.clientId}`, `issuer:${String(cert['issuer'])}`] : [])];
  lines.push(
    `seed:${String(cert['seed'])}`,
    `start:${String(cert['start'])}`,
    `expiry:${String(cert['expiry'])}`,
    'scopes:',
    ...cert.scopes,
  );
  cert['signature'] = createHmac('sha256', issuerToken).update(lines.join('\n')).digest('base64');
  return { ...creds, certificate: JSON.stringify(cert) };
}

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

describe('Taskcluster temporary credentials (certificates made by taskcluster-client)', () => {
  const issuer = { clientId: 'worker-pool', accessToken: 'worker-pool-token' };
  const auth = new Authenticator([
    { ...issuer, scopes: ['object:download:*', 'object:upload:proj/*', 'auth:create-client:task/*'] },
    { clientId: 'plain', accessToken: 'plain-token', scopes: ['object:download:public/*'] },
  ]);
  const url = 'http://127.0.0.1:8080/api/object/v1/metadata/public%2Fa';
  const req: HawkRequest = { method: 'GET', resource: '/api/object/v1/metadata/public%2Fa', host: '127.0.0.1', port: 8080 };
  const HOUR = 3_600_000;
  const DAY = 24 * HOUR;

  let made: Record<string, TemporaryCredentials>;
  beforeAll(() => {
    const cases: Record<string, CredentialsRequest> = {
      unnamed: { issuer, scopes: ['object:download:public/*'], start: 0, expiry: HOUR },
      named: { issuer, clientId: 'task/abc', scopes: ['object:download:public/*', 'object:upload:proj/x:*'], start: 0, expiry: HOUR },
      namedNoCreate: { issuer, clientId: 'elsewhere/abc', scopes: ['object:download:public/*'], start: 0, expiry: HOUR },
      expired: { issuer, scopes: ['object:download:*'], start: -2 * HOUR, expiry: -HOUR },
      // (minutes of margin: a busy machine may take a while between making and presenting them)
      expiredWithinSkew: { issuer, scopes: ['object:download:*'], start: -HOUR, expiry: -CERTIFICATE_SKEW_MS + 3 * 60_000 },
      notYet: { issuer, scopes: ['object:download:*'], start: HOUR, expiry: 2 * HOUR },
      startsWithinSkew: { issuer, scopes: ['object:download:*'], start: CERTIFICATE_SKEW_MS - 3 * 60_000, expiry: HOUR },
      thirtyOneDays: { issuer, scopes: ['object:download:*'], start: -HOUR, expiry: 31 * DAY - HOUR },
      overScoped: { issuer, scopes: ['object:download:*', 'object:upload:other/*'], start: 0, expiry: HOUR },
      byPlain: { issuer: { clientId: 'plain', accessToken: 'plain-token' }, scopes: [], start: 0, expiry: HOUR },
    };
    const creds = createWithClient(Object.values(cases));
    made = Object.fromEntries(Object.keys(cases).map((k, i) => [k, creds[i]]));
  }, 60_000);

  const call = (creds: TemporaryCredentials, authorizedScopes?: string[], key = creds.accessToken) =>
    auth.authenticate(hawkHeader(url, 'GET', creds.clientId, key, { ext: extOf(creds, authorizedScopes) }), req, memoryNonces());

  it('derives the temporary accessToken as the client does', () => {
    const cert = JSON.parse(made['unnamed'].certificate) as { seed: string };
    expect(temporaryAccessToken(issuer.accessToken, cert.seed)).toBe(made['unnamed'].accessToken);
  });

  it("accepts unnamed temporary credentials: the issuer's clientId with the certificate's scopes", async () => {
    expect(await call(made['unnamed'])).toEqual({ clientId: 'worker-pool', scopes: ['object:download:public/*'] });
    // an empty scope set is a valid certificate too
    expect(await call(made['byPlain'])).toEqual({ clientId: 'plain', scopes: [] });
  });

  it('accepts named temporary credentials whose issuer holds auth:create-client:<clientId>', async () => {
    expect(await call(made['named'])).toEqual({ clientId: 'task/abc', scopes: ['object:download:public/*', 'object:upload:proj/x:*'] });
    await expect(call(made['namedNoCreate'])).rejects.toThrow(/issuer worker-pool lacks scope auth:create-client:elsewhere\/abc/);
  });

  it('narrows temporary credentials to authorizedScopes, which the certificate must cover', async () => {
    expect(await call(made['named'], ['object:upload:proj/x:a'])).toEqual({ clientId: 'task/abc', scopes: ['object:upload:proj/x:a'] });
    // the issuer holds object:download:*, the certificate only public/*: the certificate is what counts
    await expect(call(made['named'], ['object:download:private/a'])).rejects.toThrow(
      /authorizedScopes asks for object:download:private\/a/,
    );
  });

  it("refuses certificates that expired or have not started, with Taskcluster's 5 minutes of skew each way", async () => {
    await expect(call(made['expired'])).rejects.toThrow(/temporary credentials expired at/);
    await expect(call(made['notYet'])).rejects.toThrow(/not valid yet: they start at/);
    expect((await call(made['expiredWithinSkew'])).clientId).toBe('worker-pool');
    expect((await call(made['startsWithinSkew'])).clientId).toBe('worker-pool');
    expect((await call(made['thirtyOneDays'])).clientId).toBe('worker-pool');
  });

  it('refuses a certificate spanning more than 31 days (which the client will not make: signed here)', async () => {
    const long = resigned(made['thirtyOneDays'], issuer.accessToken, (c) => (c['expiry'] = Number(c['start']) + 31 * DAY + 1));
    await expect(call(long)).rejects.toThrow(/cannot last longer than 31 days/);
  });

  it('refuses tampered certificates, over-scoped ones, and requests signed with the wrong key', async () => {
    const cert = JSON.parse(made['unnamed'].certificate) as Record<string, unknown>;
    for (const change of [
      { scopes: ['object:download:*'] },
      { expiry: Number(cert['expiry']) + DAY },
      { seed: `${String(cert['seed']).slice(0, 43)}x` },
    ]) {
      const tampered = { ...made['unnamed'], certificate: JSON.stringify({ ...cert, ...change }) };
      await expect(call(tampered)).rejects.toThrow(/ext\.certificate\.signature is not valid/);
    }
    // a named certificate presented under another name
    await expect(call({ ...made['named'], clientId: 'task/other' })).rejects.toThrow(
      /signature is not valid \(tampered, or not issued by worker-pool for clientId task\/other\)/,
    );
    await expect(call(made['overScoped'])).rejects.toThrow(
      /does not have the certificate's scopes object:upload:other\/\* \(over-scoped certificate\)/,
    );
    // the certificate is fine, but the request is signed with the issuer's own key
    await expect(call(made['unnamed'], undefined, issuer.accessToken)).rejects.toThrow(/bad mac/);
  });

  it('refuses malformed certificates, saying what is wrong', async () => {
    const cert = JSON.parse(made['unnamed'].certificate) as Record<string, unknown>;
    const sign = (certificate: unknown, id = 'worker-pool') =>
      auth.authenticate(hawkHeader(url, 'GET', id, 'k', { ext: extOf({ certificate: certificate as object }) }), req, memoryNonces());
    await expect(sign({ ...cert, version: 2 })).rejects.toThrow(/version must be 1/);
    await expect(sign({ ...cert, seed: 'short' })).rejects.toThrow(/seed must be a string of 44 characters/);
    await expect(sign({ ...cert, start: '1' })).rejects.toThrow(/start must be a number/);
    await expect(sign({ ...cert, scopes: ['é'] })).rejects.toThrow(/scopes must be an array of scopes/);
    await expect(sign({ ...cert, clientId: 'x' })).rejects.toThrow(/clientId must only be used with ext\.certificate\.issuer/);
    await expect(sign({ ...cert, issuer: 'worker-pool' })).rejects.toThrow(/issuer must differ/);
    await expect(sign({ ...cert, issuer: 'nobody' }, 'task/x')).rejects.toThrow(/unknown issuer nobody/);
    const rawExt = Buffer.from(JSON.stringify({ certificate: made['unnamed'].certificate })).toString('base64'); // a string, not parsed
    await expect(auth.authenticate(hawkHeader(url, 'GET', 'worker-pool', 'k', { ext: rawExt }), req, memoryNonces())).rejects.toThrow(
      UnauthenticatedError,
    );
    expect(() => parseExt(Buffer.from('[1]').toString('base64'))).toThrow(/JSON object/);
    expect(() => parseExt(Buffer.from(JSON.stringify({ authorizedScopes: 'x' })).toString('base64'))).toThrow(
      /authorizedScopes must be an array/,
    );
  });

  it('accepts temporary credentials in a bewit too', async () => {
    const creds = made['named'];
    const bewit = hawkBewit(url, creds.clientId, creds.accessToken, { ttlSec: 60, ext: extOf(creds, ['object:download:public/a']) });
    const signed: HawkRequest = { ...req, resource: `${req.resource}?bewit=${bewit}` };
    expect(await auth.authenticate(undefined, signed, memoryNonces())).toEqual({
      clientId: 'task/abc',
      scopes: ['object:download:public/a'],
    });
    const expired = resigned(made['expired'], issuer.accessToken, () => undefined);
    const old = hawkBewit(url, expired.clientId, expired.accessToken, { ttlSec: 60, ext: extOf(expired) });
    await expect(auth.authenticate(undefined, { ...req, resource: `${req.resource}?bewit=${old}` }, memoryNonces())).rejects.toThrow(
      /temporary credentials expired/,
    );
  });
});
