export * from './lib/model';
export * from './lib/object.service';
