import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { loadConfigOrExit } from '@ferry/config';
import { exitOnSignals, tuneHeap } from '@ferry/core';
import { IngestModule } from './app/ingest.module';

async function main(): Promise<void> {
  const config = loadConfigOrExit('ingest-grpc');
  tuneHeap(config.heapGrowingPercent);
  const app = await NestFactory.createApplicationContext(IngestModule.register(config), { logger: ['error', 'warn'] });
  exitOnSignals(app, 'ingest-grpc');
}

main().catch((err) => {
  console.error('ingest-grpc failed to start:', err);
  process.exit(1);
});
