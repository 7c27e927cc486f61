import { InvalidArgumentError } from '@ferry/errors';
import { DATA_INLINE_MAX_BYTES, InvalidRequestArgumentsError, assertObjectName, mergeHashes, parseCreateUpload } from './model';

describe('object API model', () => {
  const v4 = Buffer.from('0123456789ab4def8123456789abcdef', 'hex').toString('base64url');
  const create = { projectId: 'p', uploadId: v4, expires: '2030-01-01T00:00:00.000Z', proposedUploadMethods: {} };

  it('accepts slugids (v4 UUIDs) only', () => {
    expect(() => parseCreateUpload(create)).not.toThrow();
    expect(() =>
      parseCreateUpload({ ...create, uploadId: Buffer.from('0123456789ab1def8123456789abcdef', 'hex').toString('base64url') }),
    ).toThrow(/slugid/);
  });

  it('keeps the known hashes, ignores others, and refuses a changed one', () => {
    expect(parseCreateUpload({ ...create, hashes: { sha256: 'a'.repeat(64), md5: 'x' } }).hashes).toEqual({
      sha256: 'a'.repeat(64),
    });
    expect(mergeHashes({ sha256: 'a' }, { sha512: 'b' })).toEqual({ merged: { sha256: 'a', sha512: 'b' } });
    expect(mergeHashes({ sha256: 'a' }, { sha256: 'a' }).conflict).toBeUndefined();
    expect(mergeHashes({ sha256: 'a' }, { sha256: 'c' }).conflict).toBe('sha256');
  });

  it("takes printable ASCII names of 1 to 1024 characters; others are Taskcluster's InvalidRequestArguments", () => {
    expect(() => assertObjectName('a b/c!~')).not.toThrow();
    for (const bad of ['', 'tab\there', 'é', 'x'.repeat(1025), 'nul\u0000']) {
      expect(() => assertObjectName(bad)).toThrow(/printable ASCII/);
      expect(() => assertObjectName(bad)).toThrow(InvalidRequestArgumentsError);
    }
  });

  it('refuses dataInline past 8 KiB decoded, padded or not (a schema violation: InputValidationError)', () => {
    const inline = (bytes: Buffer, unpadded = false) => {
      const objectData = bytes.toString('base64');
      return {
        ...create,
        proposedUploadMethods: { dataInline: { contentType: 'x/y', objectData: unpadded ? objectData.replace(/=+$/, '') : objectData } },
      };
    };
    for (const size of [0, 1, 2, DATA_INLINE_MAX_BYTES - 1, DATA_INLINE_MAX_BYTES]) {
      expect(() => parseCreateUpload(inline(Buffer.alloc(size)))).not.toThrow();
      expect(() => parseCreateUpload(inline(Buffer.alloc(size), true))).not.toThrow();
    }
    for (const size of [DATA_INLINE_MAX_BYTES + 1, DATA_INLINE_MAX_BYTES + 2, DATA_INLINE_MAX_BYTES + 3, 100_000]) {
      for (const unpadded of [false, true]) {
        const parse = () => parseCreateUpload(inline(Buffer.alloc(size), unpadded));
        expect(parse).toThrow(new RegExp(`dataInline.objectData: decodes to ${size} bytes; at most 8192`));
        expect(parse).toThrow(InvalidArgumentError);
        expect(parse).not.toThrow(InvalidRequestArgumentsError);
      }
    }
  });
});
