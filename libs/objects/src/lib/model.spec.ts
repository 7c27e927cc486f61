import { assertObjectName, mergeHashes, parseCreateUpload } from './model';

describe('object API model', () => {
  const v4 = Buffer.from('0123456789ab4def8123456789abcdef', 'hex').toString('base64url');
  const create = { projectId: 'p', uploadId: v4, expires: '2030-01-01T00:00:00.000Z', proposedUploadMethods: {} };

  it('accepts slugids (v4 UUIDs) only', () => {
    expect(() => parseCreateUpload(create)).not.toThrow();
    expect(() => parseCreateUpload({ ...create, uploadId: Buffer.from('0123456789ab1def8123456789abcdef', 'hex').toString('base64url') })).toThrow(/slugid/);
  });

  it('keeps the known hashes, ignores others, and refuses a changed one', () => {
    expect(parseCreateUpload({ ...create, hashes: { sha256: 'a'.repeat(64), md5: 'x' } }).hashes).toEqual({
      sha256: 'a'.repeat(64),
    });
    expect(mergeHashes({ sha256: 'a' }, { sha512: 'b' })).toEqual({ merged: { sha256: 'a', sha512: 'b' } });
    expect(mergeHashes({ sha256: 'a' }, { sha256: 'a' }).conflict).toBeUndefined();
    expect(mergeHashes({ sha256: 'a' }, { sha256: 'c' }).conflict).toBe('sha256');
  });

  it('takes printable ASCII names of 1 to 1024 characters', () => {
    expect(() => assertObjectName('a b/c!~')).not.toThrow();
    for (const bad of ['', 'tab\there', 'é', 'x'.repeat(1025), 'nul\u0000']) expect(() => assertObjectName(bad)).toThrow(/printable ASCII/);
  });
});
