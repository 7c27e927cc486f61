import { ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { findWorkspaceRoot } from '@ferry/config';
import { bearer, byteStreamClient, queryWriteStatus } from './bytestream-client';
import { waitFor } from './wait';

export type AppName = 'ingest-grpc' | 'multipart-api' | 'object-api' | 'assembler-worker';

/** `dist/apps/<app>/main.js` of this checkout (what `nx run <app>:build` produces). */
export function builtApp(app: AppName): string {
  return join(findWorkspaceRoot(__dirname) ?? process.cwd(), 'dist', 'apps', app, 'main.js');
}

/**
 * Runs a built app as its own process, as users run it (for crash and shutdown tests). Its stderr
 * is piped (read it, or pass `inheritStderr` to see it in the test output).
 */
export function startBuiltApp(app: AppName, env: NodeJS.ProcessEnv, inheritStderr = false): ChildProcess {
  // FERRY_TEST_NODE_ARGS: options for node itself that NODE_OPTIONS refuses (--cpu-prof...)
  const nodeArgs = env['FERRY_TEST_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
  return spawn(process.execPath, [...nodeArgs, builtApp(app)], {
    // ingest-grpc's metrics and HTTP cache listeners on free ports: tests run several of them side by side
    env: { ...process.env, FERRY_GRPC_METRICS_PORT: '0', FERRY_CACHE_HTTP_PORT: '0', ...env },
    stdio: ['ignore', 'ignore', inheritStderr ? 'inherit' : 'pipe'],
  });
}

/**
 * Resolves once `ready()` does (errors count as not yet); rejects if the process exits first, or
 * after WAIT_MS (a busy machine boots slowly).
 */
export async function waitUntilReady(child: ChildProcess, ready: () => Promise<boolean>, what = 'app'): Promise<void> {
  let exit: number | null | undefined;
  void exitOf(child).then((code) => (exit = code));
  await waitFor(`${what} to be ready`, async () => exit !== undefined || (await ready()), { intervalMs: 100 });
  if (exit !== undefined) throw new Error(`${what} exited (code ${exit}) before it was ready`);
}

/**
 * Whether something accepts TCP connections on 127.0.0.1:`port`. Probe a gRPC server with this
 * before any gRPC call: grpc-js backs off between failed connection attempts (1 s, 1.6 s, 2.6 s...,
 * shared by every client of the address), so a gRPC probe started while the server boots can see it
 * many seconds after it came up; a connection attempted once it listens succeeds at once.
 */
export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * Resolves once ingest-grpc on `port` serves: it accepts connections (first: see
 * acceptsConnections), then a status query on a client of its own answers (NOT_FOUND for a name
 * nobody wrote). `metadata`: the credentials the server takes (dev mode's by default).
 */
export async function waitGrpcReady(child: ChildProcess, port: number, metadata = bearer()): Promise<void> {
  await waitUntilReady(child, () => acceptsConnections(port), 'ingest-grpc');
  const probe = byteStreamClient(`127.0.0.1:${port}`);
  try {
    const answers = () =>
      queryWriteStatus(probe, 'readiness-probe', metadata).then(
        () => true,
        (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
      );
    await waitUntilReady(child, answers, 'ingest-grpc');
  } finally {
    probe.close();
  }
}

/** Resolves once GET /readyz on `port` answers 200. */
export function waitHttpReady(child: ChildProcess, port: number): Promise<void> {
  return waitUntilReady(child, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, `app on port ${port}`);
}

/** The process's exit code, once it exits. */
export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Sends `signal` (SIGKILL by default) unless the process already ended, and waits for its exit. */
export async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  child.kill(signal);
  await exited;
}
