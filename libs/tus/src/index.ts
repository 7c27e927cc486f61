export * from './lib/tus-protocol';
export * from './lib/tus.service';
