import { InvalidArgumentError } from '@ferry/errors';
import { LIMITS, parsePartNumber, parseUploadRequest, partCount, partRange, requestDigest } from './model';

const MiB = 1024 * 1024;
const base = {
  fileName: 'a.bin',
  contentType: 'text/plain',
  contentMD5Hex: 'A'.repeat(32),
  fileSizeBytes: 12 * MiB,
  partSizeBytes: 5 * MiB,
};

describe('multipart model', () => {
  it('splits a file into ceil(size / partSize) parts with the documented byte ranges', () => {
    expect(partCount(12 * MiB, 5 * MiB)).toBe(3);
    expect(partCount(10 * MiB, 5 * MiB)).toBe(2);
    expect(partCount(1, 5 * MiB)).toBe(1);
    expect(partRange(1, 12 * MiB, 5 * MiB)).toEqual({ start: 0, end: 5 * MiB });
    expect(partRange(3, 12 * MiB, 5 * MiB)).toEqual({ start: 10 * MiB, end: 12 * MiB });
  });

  it('normalises a valid request (lowercase md5, default content type)', () => {
    const { contentType: _omitted, ...noType } = base;
    void _omitted;
    expect(parseUploadRequest(noType)).toMatchObject({ contentMD5Hex: 'a'.repeat(32), contentType: 'application/octet-stream' });
  });

  it('enforces the part size and part count limits at their edges', () => {
    expect(() => parseUploadRequest({ ...base, partSizeBytes: LIMITS.minPartBytes })).not.toThrow();
    expect(() => parseUploadRequest({ ...base, partSizeBytes: LIMITS.minPartBytes - 1 })).toThrow(InvalidArgumentError);
    expect(() => parseUploadRequest({ ...base, fileSizeBytes: 100, partSizeBytes: 100 })).not.toThrow();
    expect(() => parseUploadRequest({ ...base, fileSizeBytes: 101, partSizeBytes: 100 })).toThrow(/at least 5242880/);
    expect(() => parseUploadRequest({ ...base, partSizeBytes: LIMITS.maxPartBytes + 1 })).toThrow(/at most/);
    const size = LIMITS.maxParts * LIMITS.minPartBytes;
    expect(() => parseUploadRequest({ ...base, fileSizeBytes: size, partSizeBytes: LIMITS.minPartBytes })).not.toThrow();
    expect(() => parseUploadRequest({ ...base, fileSizeBytes: size + 1, partSizeBytes: LIMITS.minPartBytes })).toThrow(/10001 parts/);
  });

  it('parses part numbers strictly', () => {
    expect(parsePartNumber('3', 3)).toBe(3);
    for (const bad of ['0', '4', '01', '1.0', '-1', 'x', '']) expect(() => parsePartNumber(bad, 3)).toThrow(/out of range/);
  });

  it('keys idempotent starts by the whole request, not by how the md5 is spelled', () => {
    const a = parseUploadRequest(base);
    expect(requestDigest(a)).toBe(requestDigest(parseUploadRequest({ ...base, contentMD5Hex: 'a'.repeat(32) })));
    expect(requestDigest(a)).not.toBe(requestDigest(parseUploadRequest({ ...base, fileName: 'b.bin' })));
  });
});
