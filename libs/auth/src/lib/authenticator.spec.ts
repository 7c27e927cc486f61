import { PermissionDeniedError, UnauthenticatedError } from '@ferry/errors';
import { Authenticator } from './authenticator';
import { Scopes, satisfiesScope, scopeMatches } from './scopes';

describe('scopes', () => {
  it('matches exact scopes and trailing wildcards only', () => {
    expect(scopeMatches('*', 'anything')).toBe(true);
    expect(scopeMatches('ferry:write:cache/*', 'ferry:write:cache/a/b')).toBe(true);
    expect(scopeMatches('ferry:write:cache/*', 'ferry:write:other')).toBe(false);
    expect(scopeMatches('ferry:write:a', 'ferry:write:ab')).toBe(false);
    expect(scopeMatches('ferry:*:a', 'ferry:write:a')).toBe(false);
    expect(satisfiesScope([], Scopes.read('x'))).toBe(false);
  });
});

describe('Authenticator', () => {
  const auth = new Authenticator([
    { clientId: 'ci', accessToken: 'ci-token-123', scopes: ['ferry:read:*'] },
    { clientId: 'admin', accessToken: 'admin-token-1', scopes: ['*'] },
  ]);

  it('authenticates bearer tokens', () => {
    expect(auth.authenticateBearer('Bearer ci-token-123').clientId).toBe('ci');
    expect(auth.authenticateBearer('bearer admin-token-1').clientId).toBe('admin');
  });

  it('refuses missing, malformed and unknown credentials', () => {
    expect(() => auth.authenticateBearer(undefined)).toThrow(UnauthenticatedError);
    expect(() => auth.authenticateBearer('Basic abc')).toThrow(/malformed/);
    expect(() => auth.authenticateBearer('Bearer nope')).toThrow(/invalid credentials/);
  });

  it('enforces scopes', () => {
    const ci = auth.authenticateBearer('Bearer ci-token-123');
    expect(() => auth.require(ci, Scopes.read('a'))).not.toThrow();
    expect(() => auth.require(ci, Scopes.write('a'))).toThrow(PermissionDeniedError);
  });

  it('gives requests without credentials the anonymous scopes, when configured; bad credentials stay refused', () => {
    const open = new Authenticator(
      [{ clientId: 'ci', accessToken: 'ci-token-123', scopes: ['ferry:write:ci/actionResults/*'] }],
      ['ferry:read:ci/blobs/*'],
    );
    const anonymous = open.authenticateBearer(undefined);
    expect(anonymous).toEqual({ clientId: 'anonymous', scopes: ['ferry:read:ci/blobs/*'] });
    expect(() => open.require(anonymous, Scopes.write('ci/blobs/x'))).toThrow(PermissionDeniedError);
    expect(() => open.authenticateBearer('Bearer nope')).toThrow(/invalid credentials/);
    expect(open.someClientHolds(Scopes.read('ci/blobs/abc'))).toBe(true); // the anonymous principal counts
    expect(open.someClientHolds(Scopes.write('ci/actionResults/*'))).toBe(true);
    expect(open.someClientHolds(Scopes.write('other/actionResults/*'))).toBe(false);
  });
});
