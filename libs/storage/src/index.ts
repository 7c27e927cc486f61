export * from './lib/fs-storage';
export * from './lib/storage';
