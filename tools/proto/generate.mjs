#!/usr/bin/env node
// Generates TypeScript types for the protos Ferry serves (proto/protos.json) into
// libs/protocol/src/generated, with the include path google-proto-files + proto/.
// The loader options here must match PROTO_LOADER_OPTIONS in libs/protocol.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'package.json'));
const googleProtos = dirname(require.resolve('google-proto-files/package.json'));
const ferryProtos = join(root, 'proto');
const outDir = join(root, 'libs', 'protocol', 'src', 'generated');
const { entries } = JSON.parse(readFileSync(join(ferryProtos, 'protos.json'), 'utf8'));

rmSync(outDir, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
    '--keepCase', '--longs=Number', '--enums=String', '--defaults', '--oneofs', '--grpcLib=@grpc/grpc-js',
    '--includeComments', '-I', googleProtos, '-I', ferryProtos, '-O', outDir, ...entries,
  ],
  { stdio: 'inherit', cwd: root },
);
console.log(`generated types for ${entries.length} proto file(s) into ${outDir}`);
