export * from './lib/connections';
export * from './lib/keys';
export * from './lib/lua';
export * from './lib/nonces';
