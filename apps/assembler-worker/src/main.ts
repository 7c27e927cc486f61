import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { loadConfigOrExit } from '@ferry/config';
import { LOGGER, exitOnSignals, tuneHeap } from '@ferry/core';
import type { Logger } from '@ferry/logging';
import { WorkerModule } from './app/worker.module';

async function main(): Promise<void> {
  const config = loadConfigOrExit('assembler-worker');
  tuneHeap(config.heapGrowingPercent);
  const app = await NestFactory.create(WorkerModule.register(config), { logger: ['error', 'warn'] });
  exitOnSignals(app, 'assembler-worker');
  await app.listen(config.ports.worker, config.host);
  app.get<Logger>(LOGGER).info(`health and metrics on http://${config.host}:${config.ports.worker}`);
}

main().catch((err) => {
  console.error('assembler-worker failed to start:', err);
  process.exit(1);
});
