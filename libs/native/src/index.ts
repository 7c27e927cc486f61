export * from './lib/addon';
