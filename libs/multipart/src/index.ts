export * from './lib/model';
export * from './lib/multipart-store';
export * from './lib/file-handles';
export * from './lib/multipart.service';
export * from './lib/assembler';
export * from './lib/assembly-queue';
export * from './lib/multipart-expiry';
