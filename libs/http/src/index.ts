export * from './lib/error.filter';
export * from './lib/range';
export * from './lib/http-app';
export * from './lib/openapi';
export * from './lib/cors';
export * from './lib/client-errors';
