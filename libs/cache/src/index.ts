export * from './lib/cache-index';
export * from './lib/bounded-cache';
export * from './lib/cache-metrics';
