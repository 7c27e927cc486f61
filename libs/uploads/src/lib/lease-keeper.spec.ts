import { performance } from 'node:perf_hooks';
import { ConcurrentWriterError } from '@ferry/errors';
import { LeaseKeeper } from './lease-keeper';

/**
 * Pure timer logic, on jest's fake clock: a busy machine firing timers late can neither make the
 * keeper give up early nor keep it vouching past its deadline. Jest fakes the global `performance`,
 * not the one `node:perf_hooks` exports (which LeaseKeeper and this spec use): it is pointed at the
 * fake clock too.
 */
beforeEach(() => {
  jest.useFakeTimers();
  jest.spyOn(performance, 'now').mockImplementation(() => globalThis.performance.now());
});

afterEach(() => {
  jest.restoreAllMocks();
  jest.useRealTimers();
});

const advance = (ms: number) => jest.advanceTimersByTimeAsync(ms);

describe('LeaseKeeper', () => {
  it('stops vouching for the lease 4/5 of the TTL after the last renewal was sent, when renewals hang', async () => {
    // a writer whose renewals never come back (Redis stalled, or the process was frozen)
    let renewals = 0;
    const hang = () => {
      renewals++;
      return new Promise<void>(() => undefined);
    };
    const keeper = new LeaseKeeper(hang, 200, performance.now(), 'lease may have expired');
    try {
      expect(() => keeper.check()).not.toThrow();
      await advance(120);
      expect(() => keeper.check()).not.toThrow();
      await advance(40); // 160 ms after taking it: exactly 4/5 of the TTL, still ours
      expect(keeper.valid).toBe(true);
      expect(renewals).toBeGreaterThan(0); // renewals were sent; none came back
      await advance(1); // past 4/5 of the TTL
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
      await advance(400); // several renewals at TTL/3; without them the lease would be doubtful after 120 ms
      expect(keeper.valid).toBe(true);
      expect(() => keeper.check()).not.toThrow();
      fail = true;
      await advance(150); // three more renewals, all failing
      expect(() => keeper.check()).toThrow('lost');
      expect(failures).toHaveLength(1);
    } finally {
      keeper.stop();
    }
  });

  it('counts a successful commit as a renewal', async () => {
    const keeper = new LeaseKeeper(() => new Promise<void>(() => undefined), 200, performance.now(), 'expired');
    try {
      await advance(120);
      keeper.extend(performance.now());
      await advance(120); // 240 ms after taking it (past 4/5 of the TTL), 120 ms after the commit
      expect(() => keeper.check()).not.toThrow();
      await advance(41); // 161 ms after the commit
      expect(() => keeper.check()).toThrow(ConcurrentWriterError);
    } finally {
      keeper.stop();
    }
  });
});
