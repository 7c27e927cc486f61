#!/usr/bin/env node
// `clear`: forgets the failures of an earlier run (start of `npm test`). `report`: prints the
// failing tests the jest reporter tools/jest/failure-log.js recorded, and exits 1 (end of a failed
// `npm test`), so that the failures are the last thing a long log shows.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const log = join(dirname(fileURLToPath(import.meta.url)), '../../tmp/test-failures.log');
if (process.argv[2] === 'clear') {
  rmSync(log, { force: true });
} else {
  console.error('\n==== npm test failed ====');
  if (existsSync(log)) console.error(`failing tests (tmp/test-failures.log):\n\n${readFileSync(log, 'utf8')}`);
  else console.error('no jest test failed: a check before the tests did (format, typecheck, cycles, lint), see above');
  process.exit(1);
}
