import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { FerryConfig } from '@ferry/config';
import { LOGGER, classifyInfraError } from '@ferry/core';
import { FerryErrorFilter, configureHttpApp, useCors } from '@ferry/http';
import type { Logger } from '@ferry/logging';
import { JSON_LIMIT, parseJsonBodies } from './body';
import { ObjectApiModule } from './object-api.module';
import { taskclusterErrorBody } from './tc-error.filter';

/** The object-api application, configured but not listening (main and the tests listen). */
export async function createObjectApi(
  config: FerryConfig,
  nestLogger: false | ('error' | 'warn')[] = ['error', 'warn'],
): Promise<INestApplication> {
  const app = await NestFactory.create(ObjectApiModule.register(config), { bodyParser: false, logger: nestLogger });
  const streamedPaths = /^\/data\/uploads\//;
  // first: preflights are answered before anything else runs, and every answer (errors of the
  // body parser included) carries the grant (FERRY_CORS_ORIGINS; off when unset)
  useCors(app, config.cors);
  parseJsonBodies(app, streamedPaths); // before configureHttpApp: keeps the bytes Hawk's payload hash covers
  configureHttpApp(app, { streamedPaths, jsonLimit: JSON_LIMIT });
  const logger = app.get<Logger>(LOGGER);
  app.useGlobalFilters(new FerryErrorFilter((err) => logger.error({ err }, 'unexpected error'), classifyInfraError, taskclusterErrorBody));
  return app;
}
