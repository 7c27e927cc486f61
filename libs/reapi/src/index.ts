export * from './lib/action-cache';
export * from './lib/http-cache-path';
export * from './lib/reapi.service';
