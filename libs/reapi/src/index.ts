export * from './lib/action-cache';
export * from './lib/reapi.service';
