import { loadProtos, protoEntries } from './protos';

describe('loadProtos', () => {
  it('loads ByteStream from google-proto-files with the generated field names', () => {
    const { bytestream, packageDefinition } = loadProtos();
    expect(protoEntries()).toContain('google/bytestream/bytestream.proto');
    expect(Object.keys(bytestream.ByteStream.service)).toEqual(['Read', 'Write', 'QueryWriteStatus']);
    const write = packageDefinition['google.bytestream.WriteRequest'] as { type: { field: { name: string; number: number }[] } };
    expect(write.type.field.map((f) => [f.name, f.number])).toEqual([
      ['resource_name', 1], ['write_offset', 2], ['finish_write', 3], ['data', 10],
    ]);
  });
});
