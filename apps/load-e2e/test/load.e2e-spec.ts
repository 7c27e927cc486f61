/**
 * `npm run load` (issue 21): concurrent uploads of every protocol and mixed sizes against the built
 * apps (dist/apps/*) run as processes (startFerryStack), as load-run.ts describes, in two
 * topologies:
 *
 *   one stack      one process of each app;
 *   two replicas   two processes of each app, each serving app behind a TCP balancer (as behind a
 *                  Kubernetes Service), while one replica of each app in turn is killed (SIGKILL)
 *                  and started again.
 *
 * It fails when an upload fails for good, a status call answers less than was acknowledged, a
 * finished upload does not read back whole, or a process exits unasked. Figures: printed as
 * tables, and kept in tmp/artifacts/load-<topology>.json.
 *
 * LOAD_PROFILE=full (npm run load): 200 uploads at once for 60 s, both topologies. short (the e2e
 * target, in npm test): 24 for 15 s, two replicas, two kills. LOAD_USERS, LOAD_SECONDS,
 * LOAD_SEED, LOAD_TOPOLOGY (one | replicas) override.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findWorkspaceRoot } from '@ferry/config';
import { FERRY_APPS, FerryStack, startFerryStack, stopProcess } from '@ferry/testing';
import { Kill, LoadReport, formatReport, runLoad } from './load-run';

const FULL = process.env['LOAD_PROFILE'] !== 'short';
const USERS = Number(process.env['LOAD_USERS'] ?? (FULL ? 200 : 24));
const SECONDS = Number(process.env['LOAD_SECONDS'] ?? (FULL ? 60 : 15));
const SEED = Number(process.env['LOAD_SEED'] ?? (FULL ? Date.now() % 2 ** 31 : 21));
const TOPOLOGIES = (process.env['LOAD_TOPOLOGY'] ?? (FULL ? 'one,replicas' : 'replicas')).split(',');

/** One replica of each app in turn, spread over the run, each down for a few seconds. */
function killPlan(durationMs: number): Kill[] {
  const plan: Omit<Kill, 'atMs'>[] = [
    { app: 'ingest-grpc', replica: 0, downMs: 3000 },
    { app: 'multipart-api', replica: 1, downMs: 3000 },
    ...(FULL
      ? ([
          { app: 'object-api', replica: 0, downMs: 3000 },
          { app: 'assembler-worker', replica: 1, downMs: 3000 },
          { app: 'ingest-grpc', replica: 1, downMs: 3000 },
        ] as const)
      : []),
  ];
  return plan.map((k, i) => ({ ...k, atMs: Math.round(((i + 1) * durationMs) / (plan.length + 1)) }));
}

/**
 * The apps' own defaults for leases and job locks (the test stack shortens them for quick crash
 * tests): on a machine this loaded, a 2 s lease can lapse while its writer waits for a CPU.
 */
const PRODUCTION_TIMINGS: Record<string, string> = { FERRY_LEASE_TTL_MS: '10000', FERRY_JOB_LOCK_MS: '30000' };
/** LOAD_CPU_PROF=<dir>: each app writes a V8 CPU profile of the run there (they are stopped with SIGTERM to write it). */
const CPU_PROF = process.env['LOAD_CPU_PROF'];
if (CPU_PROF) PRODUCTION_TIMINGS['FERRY_TEST_NODE_ARGS'] = `--cpu-prof --cpu-prof-dir=${CPU_PROF}`;

/** Stops the apps gracefully when they profile (a profile is written at exit, not at SIGKILL). */
async function stopProfiled(stack: FerryStack): Promise<void> {
  if (!CPU_PROF) return;
  for (const app of FERRY_APPS) for (let r = 0; r < stack.replicas; r++) await stopProcess(stack.child(app, r), 'SIGTERM');
}

function keep(report: LoadReport): void {
  const dir = join(findWorkspaceRoot(__dirname) ?? process.cwd(), 'tmp', 'artifacts');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `load-${report.topology.replace(/\W+/g, '-')}.json`), JSON.stringify(report, null, 2));
  process.stdout.write(`\n${formatReport(report)}\n\n`);
}

function expectSound(report: LoadReport): void {
  expect(report.crashes).toEqual([]);
  expect(report.failures).toEqual([]);
  expect(report.regressions).toEqual([]);
  expect(report.lost).toEqual([]);
  expect(report.verified).toBe(report.uploads);
  // every face finished uploads
  expect(Object.keys(report.byFace).length).toBe(7);
}

describe('load', () => {
  let stack: FerryStack | undefined;

  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  const one = TOPOLOGIES.includes('one') ? it : it.skip;
  one(`one stack: ${USERS} concurrent uploads of every protocol for ${SECONDS} s`, async () => {
    stack = await startFerryStack({ env: PRODUCTION_TIMINGS });
    const report = await runLoad({ stack, topology: 'one stack', users: USERS, durationMs: SECONDS * 1000, seed: SEED, kills: [] });
    keep(report);
    await stopProfiled(stack);
    expectSound(report);
  });

  const replicas = TOPOLOGIES.includes('replicas') ? it : it.skip;
  replicas(`two replicas of each app, one killed at a time: ${USERS} concurrent uploads for ${SECONDS} s`, async () => {
    stack = await startFerryStack({ replicas: 2, env: PRODUCTION_TIMINGS });
    const kills = killPlan(SECONDS * 1000);
    const report = await runLoad({
      stack,
      topology: 'two replicas with kills',
      users: USERS,
      durationMs: SECONDS * 1000,
      seed: SEED,
      kills,
    });
    keep(report);
    await stopProfiled(stack);
    expectSound(report);
    expect(report.kills.length).toBe(kills.length * 2);
  });
});
