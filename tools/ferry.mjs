#!/usr/bin/env node
// The `ferry` command ("bin" of package.json): runs the built CLI, dist/apps/cli/main.js
// (apps/cli, libs/client). In a clone, `npm start` (or `npx nx run cli:build`) builds it.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'apps', 'cli', 'main.js');
if (!existsSync(main)) {
  console.error(`ferry: not built yet (${main} is missing): run \`npm start\` or \`npx nx run cli:build\` in ${root}`);
  process.exit(1);
}
await import(pathToFileURL(main).href);
