import { performance } from 'node:perf_hooks';
import { ConcurrentWriterError } from '@ferry/errors';
import { LeaseKeeper } from './lease-keeper';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('LeaseKeeper', () => {
  it('stops vouching for the lease 4/5 of the TTL after the last renewal was sent, when renewals hang', async () => {
    // a writer whose renewals never come back (Redis stalled, or the process was frozen)
    const keeper = new LeaseKeeper(() => new Promise<void>(() => undefined), 200, performance.now(), 'lease may have expired');
    try {
      expect(() => keeper.check()).not.toThrow();
      await sleep(120);
      expect(() => keeper.check()).not.toThrow();
      await sleep(80); // 200 ms after taking it: past 4/5 of the TTL
      expect(keeper.valid).toBe(false);
      expect(() => keeper.check()).toThrow(ConcurrentWriterError);
      expect(() => keeper.check()).toThrow('lease may have expired');
    } finally {
      keeper.stop();
    }
  });

  it('keeps vouching while renewals succeed, and reports a failed renewal once', async () => {
    let fail = false;
    const failures: unknown[] = [];
    const keeper = new LeaseKeeper(
      async () => {
        if (fail) throw new ConcurrentWriterError('lost');
      },
      150,
      performance.now(),
      'expired',
      (err) => failures.push(err),
    );
    try {
      await sleep(400); // several renewals at TTL/3
      expect(() => keeper.check()).not.toThrow();
      fail = true;
      await sleep(150);
      expect(() => keeper.check()).toThrow('lost');
      expect(failures).toHaveLength(1);
    } finally {
      keeper.stop();
    }
  });

  it('counts a successful commit as a renewal', async () => {
    const keeper = new LeaseKeeper(() => new Promise<void>(() => undefined), 200, performance.now(), 'expired');
    try {
      await sleep(120);
      keeper.extend(performance.now());
      await sleep(120); // 240 ms after taking it, 120 ms after the commit
      expect(() => keeper.check()).not.toThrow();
    } finally {
      keeper.stop();
    }
  });
});
