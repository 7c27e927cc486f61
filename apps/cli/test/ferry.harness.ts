import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..', '..');
/** The launcher of package.json's "bin", which runs dist/apps/cli/main.js. */
export const FERRY = join(ROOT, 'tools', 'ferry.mjs');

export interface FerryRun {
  child: ChildProcess;
  /** Resolves when the process exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  stdout(): string;
  stderr(): string;
}

/** Starts `ferry <args>` as a user would (no terminal: stdin/stdout/stderr are pipes). */
export function startFerry(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): FerryRun {
  const child = spawn(process.execPath, [FERRY, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err })),
  );
  return { child, exited, stdout: () => out, stderr: () => err };
}

export function ferry(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT) {
  return startFerry(args, env, cwd).exited;
}

/** The JSON lines of `--json` progress in `stderr`. */
export function jsonEvents(stderr: string): { event: string; bytes: number; total: number; from?: number; message?: string }[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { event: string; bytes: number; total: number; from?: number });
}

/** The largest `bytes` of the progress events so far. */
export function progressBytes(stderr: string): number {
  return Math.max(0, ...jsonEvents(stderr).map((e) => e.bytes));
}

export function sha256Of(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}
