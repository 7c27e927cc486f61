/**
 * Waiting in tests. Tests run on laptops and CI machines busy with other work, where a fixed sleep
 * is sometimes too short: a test waits for the condition it needs, with a generous bound, and fails
 * with a message saying what it waited for. `npm run test:stress` runs the suite beside a CPU hog on
 * every core to prove it.
 */

/** How long a test waits for a condition before it fails: long, because a busy machine is slow. */
export const WAIT_MS = 30_000;

const POLL_MS = 20;

export interface WaitOptions {
  /** Default {@link WAIT_MS}. */
  timeoutMs?: number;
  /** Default 20 ms. */
  intervalMs?: number;
}

/**
 * Resolves once `check` returns true (an error thrown by it counts as not yet); rejects, naming
 * `what`, when `timeoutMs` pass first.
 */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, options: WaitOptions = {}): Promise<void> {
  const { timeoutMs = WAIT_MS, intervalMs = POLL_MS } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * Runs `assertion` until it stops throwing and returns its result; when `timeoutMs` pass first,
 * throws its last error (a jest assertion's diff, as if it had run once).
 */
export async function eventually<T>(assertion: () => T | Promise<T>, options: WaitOptions = {}): Promise<T> {
  const { timeoutMs = WAIT_MS, intervalMs = POLL_MS } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
