// ByteStream for the plain-JS tools (CLI, benchmarks), which run without a build: grpc-js and the
// service definition loaded from google-proto-files, as the server loads it.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'package.json'));
export const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

/** The grpc-js package object of one proto of google-proto-files, loaded as Ferry loads it. */
export function loadGoogleProto(file) {
  const definition = protoLoader.loadSync(file, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [dirname(require.resolve('google-proto-files/package.json'))],
  });
  return grpc.loadPackageDefinition(definition);
}

/** The google.bytestream package: `new (loadByteStream().ByteStream)(address, credentials)`. */
export function loadByteStream() {
  return loadGoogleProto('google/bytestream/bytestream.proto').google.bytestream;
}

/** Call metadata carrying `Authorization: Bearer <token>`. */
export function bearer(token) {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}
