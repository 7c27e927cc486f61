import type { CatalogObject } from '@ferry/catalog';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnimplementedError } from '@ferry/errors';
import type { WriteObjectSpec__Output } from '@ferry/protocol';
import { GcsNames, checkPreconditions, generationOf, mergeChecksums, parseChecksums, parseWriteSpec, toGcsObject } from './gcs-model';

const names = new GcsNames({ maxNameBytes: 1024 });

const object = (over: Partial<CatalogObject> = {}): CatalogObject => ({
  name: 'b/o',
  size: 3,
  sha256: 'a'.repeat(64),
  md5: '900150983cd24fb0d6963f7d28e17f72',
  crc32c: '364b3fb7',
  contentType: 'text/plain',
  owner: 'dev',
  project: 'b',
  createdAt: '2026-11-21T10:00:00.123Z',
  expires: null,
  protocol: 'gcs',
  blob: 'a'.repeat(64),
  ...over,
});

const spec = (over: Record<string, unknown> = {}) =>
  ({
    resource: { name: 'o', bucket: 'projects/_/buckets/bkt', content_type: '', metadata: {} },
    ...over,
  }) as unknown as WriteObjectSpec__Output;

describe('GcsNames', () => {
  it('takes buckets only as projects/_/buckets/<valid name>', () => {
    expect(names.bucket('projects/_/buckets/my-bucket')).toBe('my-bucket');
    expect(() => names.bucket('my-bucket')).toThrow(InvalidArgumentError);
    expect(() => names.bucket('projects/p/buckets/my-bucket')).toThrow(/projects\/_\/buckets/);
    expect(() => names.bucket('projects/_/buckets/My_Bucket')).toThrow(/not a valid bucket name/);
    expect(() => names.bucket('')).toThrow(/required/);
  });

  it('knows only the configured buckets when there is a list', () => {
    const listed = new GcsNames({ maxNameBytes: 1024, buckets: ['builds'] });
    expect(listed.bucket('projects/_/buckets/builds')).toBe('builds');
    expect(() => listed.bucket('projects/_/buckets/other')).toThrow(NotFoundError);
  });

  it('accepts object names GCS accepts and refuses the rest', () => {
    for (const ok of ['a', 'dir/sub/file.txt', '/leading', 'a//b', 'ünï cödé', '{braces}']) expect(names.object(ok)).toBe(ok);
    for (const bad of ['', '.', '..', 'a\rb', 'tab\there', 'é'.repeat(513)]) expect(() => names.object(bad)).toThrow(InvalidArgumentError);
  });
});

describe('checksums', () => {
  it('reads crc32c presence exactly (0 is a checksum) and md5 as 16 bytes', () => {
    expect(parseChecksums(null)).toEqual({});
    expect(parseChecksums({ md5_hash: Buffer.alloc(0) })).toEqual({});
    expect(parseChecksums({ crc32c: 0, md5_hash: Buffer.alloc(0) })).toEqual({ crc32c: '00000000' });
    expect(parseChecksums({ crc32c: 0xdeadbeef, md5_hash: Buffer.alloc(16, 1) })).toEqual({ crc32c: 'deadbeef', md5: '01'.repeat(16) });
    expect(() => parseChecksums({ md5_hash: Buffer.alloc(15) })).toThrow(/16 bytes/);
  });

  it('merges checksums declared at different points, refusing contradictions', () => {
    expect(mergeChecksums({ crc32c: 'aa' }, { md5: 'bb' })).toEqual({ crc32c: 'aa', md5: 'bb' });
    expect(mergeChecksums({ crc32c: 'aa' }, { crc32c: 'aa' })).toEqual({ crc32c: 'aa' });
    expect(() => mergeChecksums({ crc32c: 'aa' }, { crc32c: 'ab' })).toThrow(/contradicts/);
  });
});

describe('parseWriteSpec', () => {
  it('keeps what the upload needs, with GCS defaults', () => {
    expect(parseWriteSpec(spec({ if_generation_match: 0, object_size: 10 }), { crc32c: 1, md5_hash: Buffer.alloc(0) }, names)).toEqual({
      bucket: 'bkt',
      object: 'o',
      contentType: 'application/octet-stream',
      metadata: {},
      objectSize: 10,
      ifGenerationMatch: 0,
      ifGenerationNotMatch: undefined,
      ifMetagenerationMatch: undefined,
      ifMetagenerationNotMatch: undefined,
      checksums: { crc32c: '00000001' },
    });
  });

  it('refuses what Ferry cannot honour', () => {
    expect(() => parseWriteSpec({} as WriteObjectSpec__Output, null, names)).toThrow(/resource is required/);
    expect(() => parseWriteSpec(spec({ appendable: true }), null, names)).toThrow(UnimplementedError);
    expect(() => parseWriteSpec(spec({ object_size: -1 }), null, names)).toThrow(/negative/);
    const kms = spec();
    (kms.resource as { kms_key: string }).kms_key = 'projects/p/keys/k';
    expect(() => parseWriteSpec(kms, null, names)).toThrow(UnimplementedError);
    const big = spec();
    (big.resource as { metadata: Record<string, string> }).metadata = { k: 'v'.repeat(8 * 1024) };
    expect(() => parseWriteSpec(big, null, names)).toThrow(/8192 are allowed/);
  });
});

describe('generations and preconditions', () => {
  it('presents the generation the catalog assigned, and for other objects their creation time in microseconds', () => {
    expect(generationOf(object({ generation: 7 }))).toBe(7);
    expect(generationOf(object())).toBe(Date.parse('2026-11-21T10:00:00.123Z') * 1000);
  });

  it('applies GCS precondition semantics', () => {
    const live = object({ generation: 5 });
    const fails = (p: Parameters<typeof checkPreconditions>[0], o: CatalogObject | undefined) =>
      expect(() => checkPreconditions(p, o)).toThrow(FailedPreconditionError);
    checkPreconditions({}, undefined);
    checkPreconditions({ ifGenerationMatch: 0 }, undefined);
    fails({ ifGenerationMatch: 0 }, live);
    checkPreconditions({ ifGenerationMatch: 5 }, live);
    fails({ ifGenerationMatch: 6 }, live);
    fails({ ifGenerationMatch: 5 }, undefined);
    checkPreconditions({ ifGenerationNotMatch: 6 }, live);
    checkPreconditions({ ifGenerationNotMatch: 0 }, live); // 0: "must exist"
    fails({ ifGenerationNotMatch: 5 }, live);
    fails({ ifGenerationNotMatch: 0 }, undefined);
    checkPreconditions({ ifMetagenerationMatch: 1 }, live);
    fails({ ifMetagenerationMatch: 2 }, live);
    fails({ ifMetagenerationMatch: 1 }, undefined);
    checkPreconditions({ ifMetagenerationNotMatch: 2 }, live);
    fails({ ifMetagenerationNotMatch: 1 }, live);
  });
});

describe('toGcsObject', () => {
  it('presents a catalog object as a google.storage.v2.Object', () => {
    const o = toGcsObject(object({ generation: 1_795_000_000_000_001, metadata: { a: 'b' } }), 'b', 'o');
    expect(o).toMatchObject({
      name: 'o',
      bucket: 'projects/_/buckets/b',
      generation: 1_795_000_000_000_001,
      metageneration: 1,
      size: 3,
      content_type: 'text/plain',
      metadata: { a: 'b' },
      create_time: { seconds: Math.floor(Date.parse('2026-11-21T10:00:00.123Z') / 1000), nanos: 123_000_000 },
      checksums: { crc32c: 0x364b3fb7, md5_hash: Buffer.from('900150983cd24fb0d6963f7d28e17f72', 'hex') },
    });
  });
});
