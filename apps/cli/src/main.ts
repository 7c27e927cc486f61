/**
 * `ferry`: upload, download and status over Ferry's protocols, with progress and resume
 * (libs/client). Ctrl-C stops the transfer cleanly (a second one exits at once).
 */
import { runCli } from '@ferry/client';

const controller = new AbortController();
let signals = 0;
const onSignal = (signal: NodeJS.Signals) => {
  signals++;
  if (signals > 1) process.exit(130);
  process.stderr.write(signal === 'SIGINT' ? '\n' : '');
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

runCli({
  argv: process.argv.slice(2),
  // eslint-disable-next-line no-restricted-syntax -- a client's settings, not the servers' (@ferry/config)
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
}).then(
  (code) => {
    process.exitCode = code;
    // grpc-js and keep-alive sockets must not keep a finished command alive
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    process.stderr.write(`ferry: ${String(err)}\n`);
    process.exit(1);
  },
);
