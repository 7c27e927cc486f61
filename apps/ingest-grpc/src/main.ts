import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ConfigError, FerryConfig, loadConfig } from '@ferry/config';
import { IngestModule } from './app/ingest.module';

async function main(): Promise<void> {
  let config: FerryConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`ingest-grpc: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const app = await NestFactory.createApplicationContext(IngestModule.register(config), { logger: ['error', 'warn'] });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
}

main().catch((err) => {
  console.error('ingest-grpc failed to start:', err);
  process.exit(1);
});
