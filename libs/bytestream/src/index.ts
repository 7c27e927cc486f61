export * from './lib/bytestream.service';
export * from './lib/resource-name';
export * from './lib/client-tool';
