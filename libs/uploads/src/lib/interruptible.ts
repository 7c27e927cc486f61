/**
 * Iterates `source` until `signal` aborts: a pending `next()` then rejects with the signal's reason
 * instead of waiting on a peer that stalled (a client that stopped sending, a writer whose lease was
 * taken over, a server draining for shutdown). Ending the iteration never destroys the source, so
 * the HTTP request or gRPC call behind it can still be answered with a precise status.
 */
export function interruptible<T>(source: AsyncIterator<T>, signal: AbortSignal): AsyncIterable<T> {
  const interrupted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  interrupted.catch(() => undefined);
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.race([source.next(), interrupted]),
      return: async (value?: unknown) => ({ done: true, value: value as T }),
    }),
  };
}
