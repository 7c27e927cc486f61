export * from './lib/bytestream.service';
export * from './lib/resource-name';
