export * from './lib/core.module';
export * from './lib/storage.factory';
export * from './lib/tokens';
export * from './lib/health.controller';
export * from './lib/shutdown';
export * from './lib/heap';
export * from './lib/infra-errors';
export * from './lib/multipart.module';
