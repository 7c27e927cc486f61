export * from './lib/errors';
export * from './lib/status-table';
