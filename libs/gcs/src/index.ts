export * from './lib/gcs-model';
export * from './lib/gcs.service';
