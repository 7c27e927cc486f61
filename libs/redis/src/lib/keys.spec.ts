import { RedisKeys, nameTag } from './keys';

/** The hash tag Redis Cluster uses to pick a slot. */
function tagOf(key: string): string {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
}

describe('RedisKeys', () => {
  const keys = new RedisKeys('ferry');

  it('puts an upload and its lease in one slot', () => {
    expect(tagOf(keys.upload('abc'))).toBe('abc');
    expect(tagOf(keys.uploadLease('abc'))).toBe('abc');
  });

  it('puts a catalog entry and its last generation in one slot (one publish script uses both)', () => {
    expect(tagOf(keys.objectGeneration('b/o'))).toBe(tagOf(keys.object('b/o')));
    expect(keys.objectGeneration('b/o')).not.toBe(keys.object('b/o'));
  });

  it('never lets a client-chosen name shape the hash tag', () => {
    const evil = 'a}{b';
    expect(keys.object(evil)).toBe(`ferry:obj:{${nameTag(evil)}}`);
    expect(nameTag(evil)).toMatch(/^[0-9a-f]{32}$/);
  });

  it('tags the BullMQ prefix', () => {
    expect(keys.bullPrefix()).toBe('{ferry:bull}');
  });
});
