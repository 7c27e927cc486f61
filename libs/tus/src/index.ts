export * from './lib/tus-protocol';
export * from './lib/tus.service';
export * from './lib/tus-download';
