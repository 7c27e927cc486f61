// google.storage.v2 for the plain-JS tools (benchmarks), which run without a build.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { loadGoogleProto, root } from './bytestream.mjs';

/** The google.storage.v2 package: `new (loadStorage().Storage)(address, credentials)`. */
export function loadStorage() {
  return loadGoogleProto('google/storage/v2/storage.proto').google.storage.v2;
}

/** crc32c of a buffer (the native implementation Ferry uses). */
export const { crc32c } = createRequire(join(root, 'package.json'))('@node-rs/crc32');
