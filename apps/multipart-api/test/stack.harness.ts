import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

/** The built apps (dist/apps/<app>/main.js) as separate processes, for crash and shutdown tests. */
export const DIST = join(__dirname, '..', '..', '..', 'dist', 'apps');

export function startApp(app: 'multipart-api' | 'assembler-worker', env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [join(DIST, app, 'main.js')], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Resolves once GET /readyz answers 200 on `port`; rejects if the process exits or 20 s pass. */
export async function waitReady(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`app on port ${port} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export async function kill9(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  child.kill('SIGKILL');
  await exited;
}
