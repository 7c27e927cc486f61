export * from './lib/connections';
export * from './lib/keys';
export * from './lib/nonces';
