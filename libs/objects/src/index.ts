export * from './lib/model';
export * from './lib/object.service';
export * from './lib/object-expiry';
