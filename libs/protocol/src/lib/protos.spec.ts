import { loadProtos, messageCodec, protoEntries } from './protos';

describe('loadProtos', () => {
  it('loads ByteStream from google-proto-files with the generated field names', () => {
    const { bytestream, packageDefinition } = loadProtos();
    expect(protoEntries()).toContain('google/bytestream/bytestream.proto');
    expect(Object.keys(bytestream.ByteStream.service)).toEqual(['Read', 'Write', 'QueryWriteStatus']);
    const write = packageDefinition['google.bytestream.WriteRequest'] as { type: { field: { name: string; number: number }[] } };
    expect(write.type.field.map((f) => [f.name, f.number])).toEqual([
      ['resource_name', 1],
      ['write_offset', 2],
      ['finish_write', 3],
      ['data', 10],
    ]);
  });
});

describe('loadProtos: google.storage.v2', () => {
  const fields = (type: string) =>
    (loadProtos().packageDefinition[`google.storage.v2.${type}`] as { type: { field: { name: string; number: number }[] } }).type.field.map(
      (f) => [f.name, f.number],
    );

  it('loads Storage with the field numbers of the official proto', () => {
    const { storage } = loadProtos();
    expect(protoEntries()).toContain('google/storage/v2/storage.proto');
    expect(Object.keys(storage.Storage.service)).toEqual(
      expect.arrayContaining([
        'StartResumableWrite',
        'WriteObject',
        'BidiWriteObject',
        'QueryWriteStatus',
        'CancelResumableWrite',
        'ReadObject',
      ]),
    );
    expect(fields('WriteObjectRequest')).toEqual(
      expect.arrayContaining([
        ['upload_id', 1],
        ['write_object_spec', 2],
        ['write_offset', 3],
        ['checksummed_data', 4],
        ['object_checksums', 6],
        ['finish_write', 7],
      ]),
    );
    expect(fields('BidiWriteObjectRequest')).toEqual(
      expect.arrayContaining([
        ['state_lookup', 7],
        ['flush', 8],
        ['finish_write', 9],
      ]),
    );
    expect(fields('ReadObjectResponse')).toEqual(
      expect.arrayContaining([
        ['checksummed_data', 1],
        ['object_checksums', 2],
        ['content_range', 3],
        ['metadata', 4],
      ]),
    );
  });

  it('keeps proto3 optional presence: an absent crc32c is undefined, a zero one is 0', () => {
    const type = loadProtos().packageDefinition['google.storage.v2.ChecksummedData'] as unknown as {
      serialize(v: object): Buffer;
      deserialize(b: Buffer): { crc32c?: number };
    };
    expect(type.deserialize(type.serialize({ content: Buffer.from('x') })).crc32c).toBeUndefined();
    expect(type.deserialize(type.serialize({ content: Buffer.from('x'), crc32c: 0 })).crc32c).toBe(0);
  });
});

describe('loadProtos: the REAPI cache subset written in proto/', () => {
  const fields = (type: string) =>
    (
      loadProtos().packageDefinition[`build.bazel.remote.execution.v2.${type}`] as { type: { field: { name: string; number: number }[] } }
    ).type.field.map((f) => [f.name, f.number]);

  it('serves the cache services with the field numbers of the public remote_execution.proto', () => {
    const { reapi } = loadProtos();
    expect(Object.keys(reapi.ContentAddressableStorage.service)).toEqual([
      'FindMissingBlobs',
      'BatchUpdateBlobs',
      'BatchReadBlobs',
      'GetTree',
    ]);
    expect(Object.keys(reapi.ActionCache.service)).toEqual(['GetActionResult', 'UpdateActionResult']);
    expect(fields('Digest')).toEqual([
      ['hash', 1],
      ['size_bytes', 2],
    ]);
    expect(fields('FindMissingBlobsResponse')).toEqual([['missing_blob_digests', 2]]);
    expect(fields('ActionResult')).toEqual(
      expect.arrayContaining([
        ['output_files', 2],
        ['output_directories', 3],
        ['exit_code', 4],
        ['stdout_digest', 6],
        ['execution_metadata', 9],
        ['output_symlinks', 12],
      ]),
    );
    expect(fields('CacheCapabilities')).toEqual(
      expect.arrayContaining([
        ['max_batch_total_size_bytes', 4],
        ['max_cas_blob_size_bytes', 8],
      ]),
    );
    expect(fields('BatchUpdateBlobsRequest')).toEqual(
      expect.arrayContaining([
        ['instance_name', 1],
        ['requests', 2],
        ['digest_function', 5],
      ]),
    );
  });

  it('encodes and decodes stored messages with messageCodec', () => {
    const codec = messageCodec<{ hash: string; size_bytes: number }, { hash: string; size_bytes: number }>(
      'build.bazel.remote.execution.v2.Digest',
    );
    expect(codec.decode(codec.encode({ hash: 'ab', size_bytes: 3 }))).toEqual({ hash: 'ab', size_bytes: 3 });
    expect(() => messageCodec('no.such.Type')).toThrow(/not a message type/);
  });
});
