export * from './lib/zstd';
