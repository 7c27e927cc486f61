import { InvalidArgumentError } from '@ferry/errors';
import { ReapiInstances, parseResourceName } from './resource-name';

const H = 'ab'.repeat(32);
const parse = (n: string) => parseResourceName(n, 1024);

describe('parseResourceName', () => {
  it('recognises REAPI upload names with and without instance and trailing metadata', () => {
    expect(parse(`uploads/u1/blobs/${H}/42`)).toEqual({
      kind: 'cas-upload',
      name: `uploads/u1/blobs/${H}/42`,
      instance: '',
      uuid: 'u1',
      sha256: H,
      size: 42,
    });
    expect(parse(`main/ci/uploads/u2/blobs/${H}/0/extra/meta`)).toMatchObject({
      kind: 'cas-upload',
      instance: 'main/ci',
      uuid: 'u2',
      size: 0,
    });
    expect(parse(`/uploads/u3/blobs/${H.toUpperCase()}/7`)).toMatchObject({ kind: 'cas-upload', instance: '', sha256: H });
  });

  it('recognises REAPI download names', () => {
    expect(parse(`blobs/${H}/5`)).toEqual({ kind: 'cas-download', name: `blobs/${H}/5`, instance: '', sha256: H, size: 5 });
    expect(parse(`inst/blobs/${H}/5`)).toMatchObject({ kind: 'cas-download', instance: 'inst' });
  });

  it('recognises compressed-blobs names (hash and size of the uncompressed blob)', () => {
    expect(parse(`ci/uploads/u1/compressed-blobs/zstd/${H}/42/meta`)).toEqual({
      kind: 'cas-upload',
      name: `ci/uploads/u1/compressed-blobs/zstd/${H}/42/meta`,
      instance: 'ci',
      uuid: 'u1',
      sha256: H,
      size: 42,
      compressor: 'zstd',
    });
    expect(parse(`compressed-blobs/zstd/${H}/5`)).toEqual({
      kind: 'cas-download',
      name: `compressed-blobs/zstd/${H}/5`,
      instance: '',
      sha256: H,
      size: 5,
      compressor: 'zstd',
    });
    expect(parse(`a/b/compressed-blobs/zstd/${H}/5`)).toMatchObject({ kind: 'cas-download', instance: 'a/b', compressor: 'zstd' });
  });

  it('treats everything else as a generic name', () => {
    expect(parse('builds/2026/app.tar.gz')).toEqual({ kind: 'generic', name: 'builds/2026/app.tar.gz' });
    expect(parse(`blobs/${H}/5/more`)).toMatchObject({ kind: 'generic' });
    expect(parse('blobs/nothex/5')).toMatchObject({ kind: 'generic' });
    expect(parse('with space & ünïcode')).toMatchObject({ kind: 'generic' });
  });

  it.each([
    ['', /required/],
    ['a/../b', /"\.\."/],
    ['..', /"\.\."/],
    ['./a', /"\.\."/],
    ['a\u0000b', /control character/],
    ['a\nb', /control character/],
    ['x'.repeat(10 * 1024), /longer than 1024 bytes/],
    ['/abs/name', /empty segments/],
    ['a//b', /empty segments/],
    [`uploads/u/blobs/${'a'.repeat(40)}/3`, /unsupported digest function/],
    [`compressed-blobs/deflate/${H}/3`, /compressor "deflate" is not supported/],
    [`uploads/u/compressed-blobs/brotli/${H}/3`, /compressor "brotli" is not supported/],
    [`compressed-blobs/zstd/${H}/3/more`, /a compressed-blobs name is/],
    [`compressed-blobs/zstd/nothex/3`, /a compressed-blobs name is/],
  ])('refuses %j', (name, message) => {
    expect(() => parse(name)).toThrow(InvalidArgumentError);
    expect(() => parse(name)).toThrow(message);
  });
});

describe('ReapiInstances', () => {
  it('accepts the default and any well-formed instance when no list is configured', () => {
    const any = new ReapiInstances();
    for (const ok of ['', 'main', 'team/ci', 'a.b-c_d']) expect(any.check(ok)).toBe(ok);
    for (const bad of ['a//b', '/a', 'a/', 'x/blobs', 'uploads', 'a/../b', 'tab\there'])
      expect(() => any.check(bad)).toThrow(InvalidArgumentError);
  });

  it('serves only the configured instances, and refuses a malformed list at boot', () => {
    const listed = new ReapiInstances(['', 'ci']);
    expect(listed.check('')).toBe('');
    expect(listed.check('ci')).toBe('ci');
    expect(() => listed.check('other')).toThrow(/unknown instance name "other"/);
    expect(() => new ReapiInstances(['ok', 'x/blobs'])).toThrow(/FERRY_REAPI_INSTANCES: "x\/blobs" uses the reserved segment "blobs"/);
  });
});
