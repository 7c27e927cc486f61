export * from './lib/catalog';
export * from './lib/names';
