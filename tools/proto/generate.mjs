#!/usr/bin/env node
// Generates TypeScript types for the protos Ferry serves (proto/protos.json) into
// libs/protocol/src/generated, with the include path google-proto-files + proto/.
// The loader options here must match PROTO_LOADER_OPTIONS in libs/protocol.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'package.json'));
const googleProtos = dirname(require.resolve('google-proto-files/package.json'));
const ferryProtos = join(root, 'proto');
const outDir = join(root, 'libs', 'protocol', 'src', 'generated');
const { entries } = JSON.parse(readFileSync(join(ferryProtos, 'protos.json'), 'utf8'));

// Generated beside the output, then swapped in only if it changed: tests compiling the current
// types while this runs (another nx task, a second checkout's run) never see a missing file.
const tmpDir = `${outDir}.tmp-${process.pid}`;
rmSync(tmpDir, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
    '--keepCase',
    '--longs=Number',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--grpcLib=@grpc/grpc-js',
    '--includeComments',
    '-I',
    googleProtos,
    '-I',
    ferryProtos,
    '-O',
    tmpDir,
    ...entries,
  ],
  { stdio: 'inherit', cwd: root },
);
/** Relative path → content of every file under `dir`. */
function snapshot(dir) {
  const files = new Map();
  if (!existsSync(dir)) return files;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath ?? entry.path, entry.name);
    files.set(path.slice(dir.length), readFileSync(path, 'utf8'));
  }
  return files;
}

const before = snapshot(outDir);
const after = snapshot(tmpDir);
const same = before.size === after.size && [...after].every(([path, text]) => before.get(path) === text);
if (same) {
  rmSync(tmpDir, { recursive: true, force: true });
} else {
  const old = `${outDir}.old-${process.pid}`;
  if (existsSync(outDir)) renameSync(outDir, old);
  renameSync(tmpDir, outDir);
  rmSync(old, { recursive: true, force: true });
}
console.log(`generated types for ${entries.length} proto file(s) into ${outDir}`);
