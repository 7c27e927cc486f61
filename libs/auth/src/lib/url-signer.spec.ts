import { PermissionDeniedError } from '@ferry/errors';
import { UrlSigner } from './url-signer';

describe('UrlSigner', () => {
  const signer = new UrlSigner('s'.repeat(32));
  const now = Date.UTC(2026, 0, 1);
  const expiresAt = now / 1000 + 900;
  const path = '/file/multipart/mp_abc/parts/3';
  const query = (q: string) => Object.fromEntries(new URLSearchParams(q));
  const headers = (h: Record<string, string>) => (n: string) => h[n];

  it('accepts what it signed, with the signed headers in any case', () => {
    const q = query(signer.sign({ method: 'PUT', path, expiresAt, headers: { 'Content-Type': 'text/plain' } }));
    expect(q['X-Ferry-SignedHeaders']).toBe('content-type');
    expect(() => signer.verify('PUT', path, q, headers({ 'content-type': 'text/plain' }), now)).not.toThrow();
  });

  it('refuses a changed path, method, expiry, header or signature', () => {
    const q = query(signer.sign({ method: 'PUT', path, expiresAt, headers: { 'content-type': 'text/plain' } }));
    const ok = headers({ 'content-type': 'text/plain' });
    const mismatch = /signature does not match/;
    expect(() => signer.verify('PUT', '/file/multipart/mp_abc/parts/4', q, ok, now)).toThrow(mismatch);
    expect(() => signer.verify('GET', path, q, ok, now)).toThrow(mismatch);
    expect(() => signer.verify('PUT', path, { ...q, 'X-Ferry-Expires': String(expiresAt + 1) }, ok, now)).toThrow(mismatch);
    expect(() => signer.verify('PUT', path, { ...q, 'X-Ferry-SignedHeaders': '' }, ok, now)).toThrow(mismatch);
    expect(() => signer.verify('PUT', path, q, headers({ 'content-type': 'text/html' }), now)).toThrow(mismatch);
    expect(() => signer.verify('PUT', path, q, headers({}), now)).toThrow(mismatch);
    expect(() => signer.verify('PUT', path, { ...q, 'X-Ferry-Signature': 'x' + q['X-Ferry-Signature'].slice(1) }, ok, now)).toThrow(
      mismatch,
    );
    expect(() => new UrlSigner('t'.repeat(32)).verify('PUT', path, q, ok, now)).toThrow(mismatch);
  });

  it('refuses signed header names it never signs (empty, spaced) without looking them up, as 403 (npm run fuzz)', () => {
    const q = query(signer.sign({ method: 'GET', path, expiresAt }));
    // Express's req.header('') throws: a lookup of such a name was a 500
    const strict = (n: string) => {
      if (!n) throw new TypeError('name argument is required to req.get');
      return undefined;
    };
    for (const names of [';1L ~Ni`', ';', 'content-type;', 'Content-Type', 'a b'])
      expect(() => signer.verify('GET', path, { ...q, 'X-Ferry-SignedHeaders': names }, strict, now)).toThrow(PermissionDeniedError);
  });

  it('reads a header Node gives as an array (set-cookie) as one value', () => {
    const q = query(signer.sign({ method: 'GET', path, expiresAt, headers: { 'set-cookie': 'a=1, b=2' } }));
    const asArray = (n: string) => (n === 'set-cookie' ? (['a=1', 'b=2'] as unknown as string) : undefined);
    expect(() => signer.verify('GET', path, q, asArray, now)).not.toThrow();
  });

  it('refuses an expired URL and a URL without a signature, as 403', () => {
    const q = query(signer.sign({ method: 'PUT', path, expiresAt }));
    expect(() => signer.verify('PUT', path, q, headers({}), expiresAt * 1000)).toThrow(/expired at 2026-01-01T00:15:00.000Z/);
    expect(() => signer.verify('PUT', path, {}, headers({}), now)).toThrow(PermissionDeniedError);
    expect(() => signer.verify('PUT', path, {}, headers({}), now)).toThrow(/not a signed URL/);
  });
});
