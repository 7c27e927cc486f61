#!/usr/bin/env node
// Builds Ferry's one native addon, libs/native/c/ferry_native.c (resumable MD5/SHA-256 over
// the OpenSSL inside Node.js, and byte-range locks of staging files), into
// libs/native/build/ferry_native.node, with the C
// compiler and Node's own headers. Run by `npm install` (postinstall). Never fails the install: without
// a compiler or headers Ferry runs without it (libs/native/README.md says what that costs), and this
// says so.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const source = join(root, 'libs/native/c/ferry_native.c');
const out = join(root, 'libs/native/build/ferry_native.node');
const headers = [
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include/node'),
  join(dirname(process.execPath), '../include/node'),
  '/usr/include/node',
].find((dir) => dir && existsSync(join(dir, 'node_api.h')) && existsSync(join(dir, 'openssl/sha.h')));
const cc = process.env.CC || 'cc';

if (!headers) {
  console.warn(`ferry: Node's headers (node_api.h, openssl/sha.h) not found: Ferry runs without it (libs/native/README.md)`);
  process.exit(0);
}
try {
  mkdirSync(dirname(out), { recursive: true });
  execFileSync(cc, ['-O2', '-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', `-I${headers}`, '-o', out, source], { stdio: 'inherit' });
  console.log(`ferry: built ${out.slice(root.length + 1)}`);
} catch (err) {
  console.warn(
    `ferry: could not build ${out.slice(root.length + 1)} with ${cc} (${err.message}): Ferry runs without it (libs/native/README.md)`,
  );
}
