export * from './lib/fs-storage';
export * from './lib/storage';
export * from './lib/s3-storage';
