import { ConcurrentWriterError, FailedPreconditionError, NotFoundError } from '@ferry/errors';
import { Redis, RedisKeys, createRedis, waitForRedis } from '@ferry/redis';
import { TestRedis, startTestRedis, waitFor } from '@ferry/testing';
import { ConflictingAttributeError, PublishingError, SessionStore } from './session-store';

describe('SessionStore (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  let keys: RedisKeys;
  let store: SessionStore;
  let n = 0;
  const id = () => `s${n++}`;
  /** Long enough that no lease expires while a busy machine runs a test: expiry is forced where a test needs it. */
  const leaseTtlMs = 60_000;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
    keys = new RedisKeys(server.prefix);
    store = new SessionStore(redis, keys, { idleLifetimeMs: 60_000, leaseTtlMs });
  });

  afterAll(async () => {
    redis.disconnect();
    await server.stop();
  });

  const init = (uid: string) => ({ id: uid, name: `name-${uid}`, protocol: 'bytestream', owner: 'dev', attributes: { a: '1' } });

  it('creates once and returns the stored session afterwards', async () => {
    const uid = id();
    const first = await store.getOrCreate(init(uid));
    expect(first).toMatchObject({ id: uid, committed: 0, state: 'open', attributes: { a: '1' } });
    const again = await store.getOrCreate({ ...init(uid), name: 'other' });
    expect(again.name).toBe(`name-${uid}`);
    expect(await redis.pttl(keys.upload(uid))).toBeGreaterThan(60_000);
  });

  it('grants one lease at a time, with increasing fences', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const a = await store.acquireLease(uid);
    await expect(store.acquireLease(uid)).rejects.toBeInstanceOf(ConcurrentWriterError);
    await store.releaseLease(a);
    const b = await store.acquireLease(uid);
    expect(b.fence).toBe(a.fence + 1);
    await store.releaseLease(b);
  });

  it('asks the holder to let go under policy request (tus lock release), and takes the lease once it did', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const stale = await store.acquireLease(uid);
    expect(await store.releaseAsked(stale)).toBe(false);
    await expect(store.acquireLease(uid)).rejects.toBeInstanceOf(ConcurrentWriterError);
    expect(await store.releaseAsked(stale)).toBe(false); // refuse asks nothing
    await expect(store.acquireLease(uid, 'request')).rejects.toBeInstanceOf(ConcurrentWriterError);
    expect(await store.releaseAsked(stale)).toBe(true);
    await store.releaseLease(stale);
    const next = await store.acquireLease(uid, 'request');
    expect(next.fence).toBe(stale.fence + 1);
    expect(await store.releaseAsked(next)).toBe(false); // the request was for the previous holder
    await store.releaseLease(next);
  });

  it('keeps a leased session alive with its lease, even without commits', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const lease = await store.acquireLease(uid);
    await redis.pexpire(keys.upload(uid), 1_000); // the session key near the end of its life
    await store.renewLease(lease);
    expect(await redis.pttl(keys.upload(uid))).toBeGreaterThan(60_000);
    await store.releaseLease(lease);
  });

  it('refuses a lease on an unknown upload', async () => {
    await expect(store.acquireLease('missing')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('commits by compare-and-set and only under a live lease', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const lease = await store.acquireLease(uid);
    // the lease lives for the TTL (it would expire on its own)
    const leaseKey = keys.uploadLease(uid);
    expect(await redis.pttl(leaseKey)).toBeGreaterThan(0);
    expect(await redis.pttl(leaseKey)).toBeLessThanOrEqual(leaseTtlMs);
    await store.commit(lease, 0, 100);
    await expect(store.commit(lease, 0, 200)).rejects.toThrow(/changed under the writer/);
    expect((await store.get(uid))?.committed).toBe(100);
    // the lease expires (its TTL cut short instead of waited for)
    await redis.pexpire(leaseKey, 1);
    await waitFor('the lease to expire', async () => (await redis.exists(leaseKey)) === 0);
    await expect(store.commit(lease, 100, 200)).rejects.toThrow(/lease lost/);
    const next = await store.acquireLease(uid);
    expect(next.committed).toBe(100);
    // the stale writer stays fenced out even though it knows the right committed size
    await expect(store.commit(lease, 100, 300)).rejects.toBeInstanceOf(ConcurrentWriterError);
    await store.commit(next, 100, 300);
    await expect(store.renewLease(lease)).rejects.toBeInstanceOf(ConcurrentWriterError);
    await store.renewLease(next);
    await store.releaseLease(next);
  });

  it("keeps a writer's running digests only under its lease and at the committed size they cover", async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    expect((await store.get(uid))?.writerDigests).toBeUndefined();
    const first = await store.acquireLease(uid);
    await store.commit(first, 0, 100);
    expect(await store.saveDigests(first, 50, 'state at 50')).toBe(false); // not the committed size: nothing kept
    expect((await store.get(uid))?.writerDigests).toBeUndefined();
    expect(await store.saveDigests(first, 100, 'state at 100')).toBe(true);
    await store.releaseLease(first);
    expect((await store.get(uid))?.writerDigests).toBe('state at 100');
    // a writer whose lease lapsed, still believing it holds it, while a successor went on
    const stale = await store.acquireLease(uid);
    await store.commit(stale, 100, 150);
    await redis.del(keys.uploadLease(uid));
    const next = await store.acquireLease(uid);
    await store.commit(next, 150, 200);
    expect(await store.saveDigests(next, 200, 'state at 200')).toBe(true);
    await expect(store.saveDigests(stale, 150, 'state at 150')).rejects.toBeInstanceOf(ConcurrentWriterError);
    await expect(store.saveDigests(stale, 200, 'stale state')).rejects.toBeInstanceOf(ConcurrentWriterError);
    await store.releaseLease(next);
    await expect(store.saveDigests(next, 200, 'after release')).rejects.toBeInstanceOf(ConcurrentWriterError);
    expect((await store.get(uid))?.writerDigests).toBe('state at 200');
    // a finished session kept as a record keeps no digests
    const finisher = await store.acquireLease(uid);
    await store.finish(finisher, { result: 'done', retainMs: 50_000 });
    expect(await redis.hexists(keys.upload(uid), 'writerDigests')).toBe(0);
  });

  it("forgets a writer's running digests with the content when a writer takes over or records another", async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const keep = async () => {
      const lease = await store.acquireLease(uid);
      const at = lease.committed + 10;
      await store.commit(lease, lease.committed, at);
      expect(await store.saveDigests(lease, at, `state at ${at}`)).toBe(true);
      await store.releaseLease(lease);
    };
    await keep();
    const takeover = await store.acquireLease(uid, 'takeover');
    expect((await store.get(uid))?.writerDigests).toBeUndefined();
    await store.releaseLease(takeover);
    await keep();
    await store.record(await store.acquireLease(uid), 10, { sha256: 'a'.repeat(64) });
    expect(await store.get(uid)).toMatchObject({ committed: 10 });
    expect((await store.get(uid))?.writerDigests).toBeUndefined();
  });

  it('records digests when publishing and forgets the session when finished', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const lease = await store.acquireLease(uid);
    await store.markPublishing(lease, { sha256: 'aa', md5: 'bb', crc32c: 'cc' });
    expect(await store.get(uid)).toMatchObject({ state: 'publishing', digests: { sha256: 'aa', md5: 'bb', crc32c: 'cc' } });
    await store.finish(lease);
    expect(await store.get(uid)).toBeUndefined();
    expect(await redis.exists(keys.uploadLease(uid))).toBe(0);
  });

  it('keeps a finished session as a record when asked, and never leases it again', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    const lease = await store.acquireLease(uid);
    // kept for less than a session's own retention (twice the idle lifetime), but for long enough
    // that a busy machine still finds the record
    await store.finish(lease, { result: 'bucket/object#7', retainMs: 50_000 });
    expect(await store.get(uid)).toMatchObject({ state: 'finished', result: 'bucket/object#7' });
    expect(await redis.exists(keys.uploadLease(uid))).toBe(0);
    expect(await redis.pttl(keys.upload(uid))).toBeGreaterThan(0);
    expect(await redis.pttl(keys.upload(uid))).toBeLessThanOrEqual(50_000);
    expect(await store.idleCandidates(Date.now() + 60_000, 1000)).not.toContain(uid);
    await expect(store.acquireLease(uid)).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('expires idle sessions but never leased or recently active ones', async () => {
    const idle = id();
    const leased = id();
    const fresh = id();
    for (const u of [idle, leased, fresh]) await store.getOrCreate(init(u));
    const lease = await store.acquireLease(leased);
    const cutoff = Date.now() + 1;
    await waitFor('the clock to pass the cutoff', () => Date.now() > cutoff);
    const later = await store.acquireLease(fresh); // activity after the cutoff
    await store.releaseLease(later);
    const candidates = await store.idleCandidates(cutoff, 100);
    expect(candidates).toEqual(expect.arrayContaining([idle, leased]));
    expect(candidates).not.toContain(fresh);
    expect(await store.beginExpiry(idle, cutoff)).toBe('expiring');
    expect(await store.beginExpiry(leased, cutoff)).toBe('active');
    // expiring: gone for every reader and writer, but still a candidate until it ends
    expect(await store.get(idle)).toBeUndefined();
    await expect(store.acquireLease(idle)).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.getOrCreate(init(idle))).rejects.toBeInstanceOf(NotFoundError);
    expect(await store.idleCandidates(cutoff, 100)).toContain(idle);
    // a run that stopped half way: the next one finds it expiring and finishes
    expect(await store.beginExpiry(idle, cutoff)).toBe('expiring');
    await store.endExpiry(idle);
    expect(await store.exists(idle)).toBe(false);
    expect(await store.exists(leased)).toBe(true);
    expect(await store.idleCandidates(cutoff, 100)).not.toContain(idle);
    expect(await store.beginExpiry(idle, cutoff)).toBe('gone');
    // and the id can be used again
    expect((await store.getOrCreate(init(idle))).committed).toBe(0);
    await store.releaseLease(lease);
  });

  it('never expires a pinned session (a job owns its finish), and ends it with its parts once unpinned', async () => {
    const uid = id();
    await store.getOrCreate(init(uid));
    await redis.hset(keys.upload(uid), 'state', 'publishing', 'pinned', 1);
    await redis.set(keys.uploadParts(uid), '11');
    const cutoff = Date.now() + 1;
    await waitFor('the clock to pass the cutoff', () => Date.now() > cutoff);
    expect(await store.beginExpiry(uid, cutoff)).toBe('pinned');
    // looked at again one lifetime later, not at every run
    expect(await store.idleCandidates(cutoff, 100)).not.toContain(uid);
    expect(await store.get(uid)).toMatchObject({ state: 'publishing' });
    await redis.hset(keys.upload(uid), 'pinned', 0);
    expect(await store.beginExpiry(uid, cutoff)).toBe('expiring');
    // the state it had is kept for the faces' clean-up (ExpiryHook)
    expect(await redis.hget(keys.upload(uid), 'expiredFrom')).toBe('publishing');
    await store.endExpiry(uid);
    expect(await redis.exists(keys.upload(uid), keys.uploadParts(uid))).toBe(0);
  });

  describe('content written whole (the object API: newest writer wins, a finisher publishes)', () => {
    const sha = (c: string) => c.repeat(64);

    it('lets the newest writer take over: the one it replaced can record nothing, and what was recorded is forgotten', async () => {
      const uid = id();
      await store.getOrCreate(init(uid));
      const first = await store.acquireLease(uid, 'takeover');
      await store.record(first, 10, { sha256: sha('a'), sha512: 'f'.repeat(128) });
      expect(await store.get(uid)).toMatchObject({ committed: 10, writtenBy: first.fence, digests: { sha256: sha('a') } });
      expect(await store.leaseHeld(uid)).toBe(false); // recording releases the lease
      const second = await store.acquireLease(uid, 'takeover');
      // the recorded bytes are forgotten at once, and the new writer is told whose they were
      expect(second.replaced).toBe(first.fence);
      const during = await store.get(uid);
      expect([during?.committed, during?.writtenBy, during?.digests]).toEqual([0, undefined, undefined]);
      // a third takes over from the second while it writes (alive, or dead with its process)
      const third = await store.acquireLease(uid, 'takeover');
      expect(third.replaced).toBeUndefined();
      await expect(store.record(second, 20, { sha256: sha('b') })).rejects.toBeInstanceOf(ConcurrentWriterError);
      await expect(store.renewLease(second)).rejects.toBeInstanceOf(ConcurrentWriterError);
      await store.record(third, 30, { sha256: sha('c') });
      expect(await store.get(uid)).toMatchObject({
        committed: 30,
        writtenBy: third.fence,
        digests: { sha256: sha('c') },
        fence: third.fence,
      });
      // (a refusing writer still refuses while one holds the lease)
      const fourth = await store.acquireLease(uid, 'takeover');
      await expect(store.acquireLease(uid)).rejects.toBeInstanceOf(ConcurrentWriterError);
      await store.releaseLease(fourth);
    });

    it('takes a lease only for the session whose attributes match', async () => {
      const uid = id();
      await store.getOrCreate(init(uid));
      await expect(store.acquireLease(uid, 'takeover', { a: '2' })).rejects.toBeInstanceOf(NotFoundError);
      await store.releaseLease(await store.acquireLease(uid, 'takeover', { a: '1' }));
    });

    it('publishes under a lease no takeover can take, and reopens a refused content as it was', async () => {
      const uid = id();
      await store.getOrCreate(init(uid));
      await store.record(await store.acquireLease(uid, 'takeover'), 5, { sha256: sha('a') });
      const finisher = await store.acquireLease(uid, 'publish');
      expect((await store.get(uid))?.state).toBe('publishing');
      await expect(store.acquireLease(uid, 'takeover')).rejects.toBeInstanceOf(PublishingError);
      await expect(store.acquireLease(uid, 'publish')).rejects.toBeInstanceOf(ConcurrentWriterError);
      await expect(store.amend(uid, { fill: { b: '1' } })).rejects.toBeInstanceOf(PublishingError);
      // the content is refused: open again, with what was recorded
      await store.reopen(finisher);
      expect(await store.get(uid)).toMatchObject({ state: 'open', committed: 5, digests: { sha256: sha('a') } });
      expect(await store.leaseHeld(uid)).toBe(false);
      // a finisher that died (its lease lapsed) leaves the session publishing: a writer may take it over
      await store.acquireLease(uid, 'publish');
      await redis.del(keys.uploadLease(uid));
      const writer = await store.acquireLease(uid, 'takeover');
      expect((await store.get(uid))?.state).toBe('open');
      await store.releaseLease(writer);
    });

    it('amends attributes in one step: matching the upload, filling what is absent, refusing another value', async () => {
      const uid = id();
      await store.getOrCreate(init(uid));
      await store.amend(uid, { match: { a: '1' }, fill: { h: 'x' }, set: { t: 'text/plain' } });
      await store.amend(uid, { fill: { h: 'x' } }); // the same value again
      await expect(store.amend(uid, { fill: { h: 'y' } })).rejects.toEqual(new ConflictingAttributeError('h'));
      await expect(store.amend(uid, { match: { a: '2' }, set: { t: 'other' } })).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.amend(id(), { set: { t: 'other' } })).rejects.toBeInstanceOf(NotFoundError);
      expect((await store.get(uid))?.attributes).toEqual({ a: '1', h: 'x', t: 'text/plain' });
      // racing declarations of different values: exactly one wins
      const values = ['1', '2', '3', '4', '5', '6'];
      const answers = await Promise.allSettled(values.map((v) => store.amend(uid, { fill: { race: v } })));
      expect(answers.filter((a) => a.status === 'fulfilled')).toHaveLength(1);
    });

    it('ends a session with a lifetime from its creation at its deadline, however active', async () => {
      const uid = id();
      await store.getOrCreate({ ...init(uid), lifetimeMs: 300 });
      const lease = await store.acquireLease(uid, 'takeover');
      await store.record(lease, 1, { sha256: sha('a') });
      expect((await store.get(uid))?.deadline).toBeGreaterThan(Date.now());
      // the expiry job looks at it by its deadline, though the idle lifetime (60 s) is far from over
      const deadline = (await store.get(uid))?.deadline as number;
      expect(await store.idleCandidates(deadline - 60_000, 100)).toContain(uid);
      expect(await store.beginExpiry(uid, Date.now() - 60_000)).toBe('active');
      await waitFor('the deadline to pass', () => Date.now() > deadline);
      expect(await store.get(uid)).toBeUndefined();
      await expect(store.acquireLease(uid, 'takeover')).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.amend(uid, { set: { t: 'x' } })).rejects.toBeInstanceOf(NotFoundError);
      expect(await store.beginExpiry(uid, Date.now() - 60_000)).toBe('expiring');
      await store.endExpiry(uid);
      expect(await store.exists(uid)).toBe(false);
    });
  });
});
