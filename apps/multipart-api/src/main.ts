import 'reflect-metadata';
import { loadConfigOrExit } from '@ferry/config';
import { LOGGER, exitOnSignals, tuneHeap } from '@ferry/core';
import { drainHttpServer } from '@ferry/http';
import type { Logger } from '@ferry/logging';
import { createMultipartApi } from './app/bootstrap';

async function main(): Promise<void> {
  const config = loadConfigOrExit('multipart-api', undefined, ['signingKey']);
  tuneHeap(config.heapGrowingPercent);
  const app = await createMultipartApi(config);
  exitOnSignals(app, 'multipart-api', undefined, () => drainHttpServer(app.getHttpServer()));
  await app.listen(config.ports.multipart, config.host);
  app.get<Logger>(LOGGER).info(`multipart API on http://${config.host}:${config.ports.multipart} (OpenAPI at /docs)`);
}

main().catch((err) => {
  console.error('multipart-api failed to start:', err);
  process.exit(1);
});
