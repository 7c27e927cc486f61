#!/usr/bin/env node
// `npm run test:stress [-- --runs N] [-- <command...>]`: runs the test suite (default `npm test`)
// with a CPU hog on every core beside it, N times in a row (default 1), stopping at the first
// failure, and prints each run's wall time. A suite that passes only on an idle machine fails here.
//
//   npm run test:stress                          # npm test once, beside one hog per core
//   npm run test:stress -- --runs 3              # three times in a row
//   npm run test:stress -- --hogs 4 -- npx nx run multipart-api:test   # one project, four hogs
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function parse(argv) {
  const options = { runs: 1, hogs: availableParallelism(), command: ['npm', 'test'] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      if (i + 1 < argv.length) options.command = argv.slice(i + 1);
      break;
    }
    const value = Number(argv[++i]);
    if ((a !== '--runs' && a !== '--hogs') || !Number.isInteger(value) || value < (a === '--runs' ? 1 : 0)) {
      console.error(`usage: npm run test:stress [-- --runs N] [--hogs N] [-- command...]  (bad argument: ${a} ${argv[i] ?? ''})`);
      process.exit(2);
    }
    options[a.slice(2)] = value;
  }
  return options;
}

/** One busy loop per hog, at the tests' own priority: they compete for every core. */
function startHogs(n) {
  const hogs = [];
  for (let i = 0; i < n; i++) hogs.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  return () => hogs.forEach((h) => h.kill('SIGKILL'));
}

function run(command) {
  return new Promise((resolveRun) => {
    const child = spawn(command[0], command.slice(1), { cwd: root, stdio: 'inherit', env: { ...process.env, FERRY_TEST_STRESS: '1' } });
    const forward = (signal) => child.kill(signal);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward).off('SIGTERM', forward);
      resolveRun(code ?? (signal ? 128 : 1));
    });
  });
}

const options = parse(process.argv.slice(2));
const stopHogs = startHogs(options.hogs);
process.on('exit', stopHogs);
const results = [];
let failed = 0;
for (let i = 1; i <= options.runs && !failed; i++) {
  console.log(`\n[stress] run ${i}/${options.runs}: ${options.command.join(' ')} beside ${options.hogs} CPU hog(s)\n`);
  const started = Date.now();
  failed = await run(options.command);
  results.push({ run: i, seconds: Math.round((Date.now() - started) / 1000), outcome: failed ? `failed (exit ${failed})` : 'passed' });
}
stopHogs();
console.log(`\n[stress] ${options.command.join(' ')} beside ${options.hogs} CPU hog(s):`);
for (const r of results) console.log(`[stress]   run ${r.run}: ${r.outcome} in ${Math.floor(r.seconds / 60)} min ${r.seconds % 60} s`);
process.exit(failed ? 1 : 0);
