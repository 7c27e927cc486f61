import type { INestApplicationContext } from '@nestjs/common';

/**
 * Graceful shutdown for an app's main: on SIGTERM or SIGINT, close the app (its shutdown hooks let
 * in-flight work reach a committed point and close connections), then exit 0. A second signal, or
 * closing for longer than `graceMs`, exits 1 at once.
 */
export function exitOnSignals(
  app: INestApplicationContext,
  name: string,
  graceMs = 30_000,
  /** Runs first: an HTTP app stops accepting and lets its requests in flight finish (drainHttpServer). */
  drain: () => Promise<void> = async () => undefined,
): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) process.exit(1);
    closing = true;
    console.error(`${name}: ${signal}, shutting down`);
    setTimeout(() => {
      console.error(`${name}: shutdown took longer than ${graceMs} ms, exiting`);
      process.exit(1);
    }, graceMs).unref();
    drain()
      .then(() => app.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(`${name}: error while shutting down`, err);
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
