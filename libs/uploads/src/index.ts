export * from './lib/hashing';
export * from './lib/upload-engine';
export * from './lib/upload-writer';
export * from './lib/upload-expiry';
export * from './lib/batched-writer';
export * from './lib/lease-keeper';
export * from './lib/interruptible';
export * from './lib/upload-metrics';
