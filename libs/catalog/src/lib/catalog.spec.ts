import { AlreadyExistsError } from '@ferry/errors';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { TestRedis, sleep, startTestRedis, waitFor } from '@ferry/testing';
import { Catalog, CatalogObject } from './catalog';

describe('Catalog (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  let catalog: Catalog;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    catalog = new Catalog(redis, new RedisKeys(server.prefix));
  });

  afterAll(async () => {
    await redis.quit();
    await server.stop();
  });

  /** Returns once Date.now() is past every claim made so far (claims record the time they were made). */
  async function clockPastClaims(): Promise<void> {
    const last = Date.now();
    await waitFor('the clock to move past the claims', () => Date.now() > last);
  }

  const obj = (name: string, sha: string): CatalogObject => ({
    name,
    size: 3,
    sha256: sha,
    md5: 'm',
    crc32c: '00000000',
    contentType: 'application/octet-stream',
    owner: 'dev',
    project: '',
    createdAt: '2026-01-01T00:00:00.000Z',
    expires: null,
    protocol: 'bytestream',
    blob: sha,
  });

  it('publishes once; identical content is idempotent, different content refused', async () => {
    const a = obj('dir/a {weird} name', 'a'.repeat(64));
    expect(await catalog.publish(a)).toEqual(a);
    expect(await catalog.get(a.name)).toEqual(a);
    expect(await catalog.publish({ ...a, createdAt: 'later' })).toEqual(a);
    await expect(catalog.publish(obj(a.name, 'b'.repeat(64)))).rejects.toBeInstanceOf(AlreadyExistsError);
    expect(await catalog.referencesOf('a'.repeat(64))).toEqual([a.name]);
    expect(await catalog.referencesOf('b'.repeat(64))).toEqual([]);
  });

  it('round-trips the optional fields: sha512, generation, user metadata', async () => {
    const full = { ...obj('b/full', '9'.repeat(64)), sha512: 'f'.repeat(128), generation: 0, metadata: { k: 'v', ü: '{}' } };
    const published = await catalog.publish(full);
    expect(published.generation).toBeGreaterThan(0);
    expect(await catalog.get(full.name)).toEqual(published);
    expect(published).toEqual({ ...full, generation: published.generation });
    const plain = obj('b/plain', '9'.repeat(64));
    await catalog.publish(plain);
    expect(await catalog.get(plain.name)).toEqual(plain); // no empty optional fields appear
  });

  it('lets only one of many concurrent publishers win', async () => {
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => catalog.publish(obj('race', i.toString(16).repeat(64)))));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('assigns generations that increase per name across replicas with skewed clocks, also after a delete', async () => {
    const realKeys = new RedisKeys(server.prefix);
    const ahead = new Catalog(redis, realKeys, () => Date.now() + 3_600_000); // a replica an hour ahead
    const behind = new Catalog(redis, realKeys, () => Date.now() - 3_600_000); // and one an hour behind
    const name = 'bucket/generations';
    const g1 = (await ahead.publish({ ...obj(name, '1a'.repeat(32)), generation: 0 })).generation as number;
    expect(g1).toBeGreaterThanOrEqual((Date.now() + 3_000_000) * 1000); // from the clock when it is ahead
    const existing = await catalog.get(name);
    expect(await catalog.deleteIfUnchanged(name, existing?.createdAt as string)).toBe(true);
    const g2 = (await behind.publish({ ...obj(name, '1b'.repeat(32)), generation: 0 })).generation as number;
    expect(g2).toBe(g1 + 1); // the clock is behind: the name's last generation + 1
    expect((await catalog.get(name))?.generation).toBe(g2);
    // concurrent publications of one name after deletes still never reuse a generation
    const seen = new Set<number>([g1, g2]);
    for (let i = 0; i < 5; i++) {
      await catalog.delete(name);
      const replica = i % 2 ? ahead : behind;
      const g = (await replica.publish({ ...obj(name, `${i}c`.repeat(32)), generation: 0 })).generation as number;
      expect(g).toBeGreaterThan(Math.max(...seen));
      seen.add(g);
    }
    // other names have their own sequence, from the clock; objects that ask for none get none
    const other = (await behind.publish({ ...obj('bucket/other', '2a'.repeat(32)), generation: 0 })).generation as number;
    expect(other).toBeLessThan(g1);
    expect((await catalog.publish(obj('no-generation', '2b'.repeat(32)))).generation).toBeUndefined();
  });

  it('deletes only an object of the given protocol, in one step, naming the owner otherwise', async () => {
    const o = { ...obj('b/owned', '3a'.repeat(32)), protocol: 'object' };
    await catalog.publish(o);
    expect(await catalog.deleteOwn(o.name, o.createdAt, 'gcs')).toEqual({ deleted: false, ownedBy: 'object' });
    expect(await catalog.get(o.name)).toEqual(o);
    expect(await catalog.deleteOwn(o.name, 'another time', 'object')).toEqual({ deleted: false });
    expect(await catalog.deleteOwn(o.name, o.createdAt, 'object')).toEqual({ deleted: true });
    expect(await catalog.get(o.name)).toBeUndefined();
    expect(await catalog.deleteOwn(o.name, o.createdAt, 'object')).toEqual({ deleted: false });
  });

  it('deletes objects and their blob reference', async () => {
    const c = obj('gone', 'c'.repeat(64));
    await catalog.publish(c);
    await catalog.delete('gone');
    expect(await catalog.get('gone')).toBeUndefined();
    expect(await catalog.referencesOf('c'.repeat(64))).toEqual([]);
  });

  it('indexes expiring objects and collects a blob only once nothing references or claims it', async () => {
    const sha = 'd'.repeat(64);
    await catalog.publish({ ...obj('exp-1', sha), expires: '2020-01-01T00:00:00.000Z' });
    await catalog.publish(obj('keep-1', sha));
    expect(await catalog.expiredNames(Date.now(), 10)).toEqual(['exp-1']);
    await catalog.delete('exp-1');
    expect(await catalog.expiredNames(Date.now(), 10)).toEqual([]);
    expect(await catalog.collectBlob(sha, Date.now() - 60_000)).toBe(false); // keep-1 still references it
    await catalog.delete('keep-1');
    expect(await catalog.orphanedBlobs(Date.now(), 100)).toContain(sha);
    // a publisher claims it before the collector decides: kept
    await catalog.claimBlob(sha, 'new-1');
    expect(await catalog.collectBlob(sha, Date.now() - 60_000)).toBe(false);
    // the claim never became an object: once it is older than the cutoff it is dropped, and the blob goes
    await clockPastClaims();
    expect(await catalog.collectBlob(sha, Date.now())).toBe(true);
    expect(await catalog.referencesOf(sha)).toEqual([]);
    // collected once: a second decision finds no orphan mark
    expect(await catalog.collectBlob(sha, Date.now())).toBe(false);
  });

  it('collects again a blob whose deletion failed, unless it was claimed meanwhile', async () => {
    const sha = '7b'.repeat(32);
    await catalog.publish(obj('gone-1', sha));
    await catalog.delete('gone-1');
    expect(await catalog.collectBlob(sha, Date.now())).toBe(true);
    // deleting the bytes failed: the collector puts it back
    await catalog.requeueBlob(sha);
    await catalog.finishCollection(sha);
    expect(await catalog.orphanedBlobs(Date.now(), 100)).toContain(sha);
    expect(await catalog.collectBlob(sha, Date.now())).toBe(true);
    // failed again, and a publisher claimed it (once the collection ended): it stays
    await catalog.finishCollection(sha);
    await catalog.claimBlob(sha, 'new-2');
    await catalog.requeueBlob(sha);
    expect(await catalog.collectBlob(sha, Date.now() - 60_000)).toBe(false);
  });

  it('makes a claim wait while a collection it missed deletes the bytes, and deletes only the object examined', async () => {
    const sha = 'e'.repeat(64);
    await catalog.publish(obj('e-1', sha));
    await catalog.delete('e-1');
    expect(await catalog.collectBlob(sha, Date.now())).toBe(true);
    let claimed = false;
    const claim = catalog.claimBlob(sha, 'e-2').then(() => (claimed = true));
    // the claim reached Redis (it records itself at once) and waits for the collection to end
    await waitFor('the claim to be recorded', async () => (await catalog.referencesOf(sha)).includes('e-2'));
    await sleep(150);
    expect(claimed).toBe(false);
    await catalog.finishCollection(sha);
    await claim;
    expect(claimed).toBe(true);

    await catalog.publish({ ...obj('f-1', 'f'.repeat(64)), createdAt: 'second' });
    expect(await catalog.deleteIfUnchanged('f-1', 'first')).toBe(false);
    expect(await catalog.get('f-1')).toBeDefined();
    expect(await catalog.deleteIfUnchanged('f-1', 'second')).toBe(true);
    expect(await catalog.get('f-1')).toBeUndefined();
    expect(await catalog.referencesOf('f'.repeat(64))).toEqual([]);
  });

  it('collects a blob whose only remaining claim is stale (a publisher that died before publishing)', async () => {
    const sha = '9a'.repeat(32);
    await catalog.claimBlob(sha, 'died-before-publishing');
    await catalog.publish(obj('real-owner', sha));
    await catalog.delete('real-owner');
    expect(await catalog.orphanedBlobs(Date.now(), 1000)).toContain(sha);
    // within the grace period the claim counts, and the blob stays queued to be looked at again
    expect(await catalog.collectBlob(sha, Date.now() - 60_000)).toBe(false);
    expect(await catalog.orphanedBlobs(Date.now(), 1000)).toContain(sha);
    // past it, the claim is dropped and the blob goes
    await clockPastClaims();
    expect(await catalog.collectBlob(sha, Date.now())).toBe(true);
    expect(await catalog.referencesOf(sha)).toEqual([]);
    expect(await catalog.orphanedBlobs(Date.now(), 1000)).not.toContain(sha);
  });
});
