export * from './lib/bytes';
export * from './lib/ports';
export * from './lib/redis-server';
export * from './lib/temp-dir';
export * from './lib/bytestream-client';
export * from './lib/multipart-client';
export * from './lib/hawk';
