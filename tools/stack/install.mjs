#!/usr/bin/env node
// Installs dependencies when node_modules is missing or older than package-lock.json, so that
// `npm start` and `npm test` work on a fresh clone. Standard library only (runs before install).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function installIfNeeded() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return buildNativeIfNeeded();
  console.log('[ferry] installing dependencies (npm install)');
  // `npm install`, not `npm ci`: npm 11 writes lockfiles without the optional per-platform
  // packages (@swc/core-*, sass-embedded-*), which `npm ci` then refuses as out of sync.
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`[ferry] npm install failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

/** Ferry's native addon (npm install's postinstall builds it): again when its source changed. */
function buildNativeIfNeeded() {
  const source = join(root, 'libs/native/c/ferry_native.c');
  const addon = join(root, 'libs/native/build/ferry_native.node');
  if (existsSync(addon) && statSync(addon).mtimeMs >= statSync(source).mtimeMs) return;
  spawnSync(process.execPath, [join(root, 'tools/native/build.mjs')], { cwd: root, stdio: 'inherit' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) installIfNeeded();
