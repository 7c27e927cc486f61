import 'reflect-metadata';
import { loadConfigOrExit } from '@ferry/config';
import { LOGGER, exitOnSignals, tuneHeap } from '@ferry/core';
import { drainHttpServer } from '@ferry/http';
import type { Logger } from '@ferry/logging';
import { createObjectApi } from './app/bootstrap';

async function main(): Promise<void> {
  const config = loadConfigOrExit('object-api', undefined, ['signingKey']);
  tuneHeap(config.heapGrowingPercent);
  const app = await createObjectApi(config);
  exitOnSignals(app, 'object-api', undefined, () => drainHttpServer(app.getHttpServer()));
  await app.listen(config.ports.object, config.host);
  app.get<Logger>(LOGGER).info(`Taskcluster object API on http://${config.host}:${config.ports.object}/api/object/v1`);
}

main().catch((err) => {
  console.error('object-api failed to start:', err);
  process.exit(1);
});
