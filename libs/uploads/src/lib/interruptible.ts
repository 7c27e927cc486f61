/**
 * Iterates `source` until `signal` aborts: a pending `next()` then rejects with the signal's reason
 * instead of waiting on a peer that stalled (a client that stopped sending, a writer whose lease was
 * taken over, a server draining for shutdown). Ending the iteration never destroys the source, so
 * the HTTP request or gRPC call behind it can still be answered with a precise status.
 *
 * One listener on the signal for the whole iteration, which knows only the `next()` now waiting.
 * (Racing every `next()` against one promise that never settles, the obvious way, leaves a reaction
 * on that promise per call, each holding the chunk it resolved with: a whole upload kept in memory
 * until the request ended.)
 */
export function interruptible<T>(source: AsyncIterator<T>, signal: AbortSignal): AsyncIterable<T> {
  let waiting: ((reason: unknown) => void) | undefined;
  signal.addEventListener('abort', () => waiting?.(signal.reason), { once: true });
  const next = (): Promise<IteratorResult<T>> =>
    new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      waiting = reject;
      source.next().then(
        (result) => {
          waiting = undefined;
          resolve(result);
        },
        (err: unknown) => {
          waiting = undefined;
          reject(err);
        },
      );
    });
  return {
    [Symbol.asyncIterator]: () => ({
      next,
      return: async (value?: unknown) => ({ done: true, value: value as T }),
    }),
  };
}
