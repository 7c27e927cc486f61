import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { FerryConfig } from '@ferry/config';
import { LOGGER, classifyInfraError } from '@ferry/core';
import { FerryErrorFilter, configureHttpApp, methodOverrideMiddleware, useCors } from '@ferry/http';
import type { Logger } from '@ferry/logging';
import { MultipartApiModule } from './multipart-api.module';

/** Routes whose bodies are upload bytes, streamed to staging (never parsed): part PUTs, tus. */
const STREAMED = /^\/file\/multipart\/[^/]+\/parts\/[^/]+$|^\/files(\/|$)/;

/** tus's routes, where a POST with `X-HTTP-Method-Override: PATCH` (or DELETE) is that method. */
const TUS = /^\/files(\/|$)/;

/** The multipart-api application, configured but not listening (main and the tests listen). */
export async function createMultipartApi(
  config: FerryConfig,
  nestLogger: false | ('error' | 'warn')[] = ['error', 'warn'],
): Promise<INestApplication> {
  const app = await NestFactory.create(MultipartApiModule.register(config), { bodyParser: false, logger: nestLogger });
  // first: preflights are answered before anything else runs, and every answer (errors of the
  // body parser included) carries the grant (FERRY_CORS_ORIGINS; off when unset)
  useCors(app, config.cors);
  app.use(methodOverrideMiddleware(TUS));
  configureHttpApp(app, { streamedPaths: STREAMED });
  const logger = app.get<Logger>(LOGGER);
  app.useGlobalFilters(new FerryErrorFilter((err) => logger.error({ err }, 'unexpected error'), classifyInfraError));
  return app;
}
