import type { Command, Options, ProtocolName } from './args';
import { USAGE, parseCommand } from './args';
import { CliError, InterruptedError } from './errors';
import { ByteStreamProtocol } from './bytestream';
import { TusProtocol } from './tus';
import { MultipartProtocol } from './multipart';
import { GcsProtocol } from './gcs';
import { ObjectProtocol } from './object';
import { createProgress, formatBytes } from './progress';
import type { ProgressTarget } from './progress';
import type { ProtocolClient } from './transfer';
import { localFile, startSha256 } from './transfer';

export const VERSION = '0.1.0';

/** The process around the command: its streams, its environment, and Ctrl-C. */
export interface CliIo {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdout: ProgressTarget;
  stderr: ProgressTarget;
  /** Aborted on Ctrl-C / SIGTERM. */
  signal: AbortSignal;
}

function client(protocol: ProtocolName, options: Options): ProtocolClient {
  switch (protocol) {
    case 'bytestream':
      return new ByteStreamProtocol(options.endpoints, options);
    case 'tus':
      return new TusProtocol(options.endpoints, options);
    case 'gcs':
      return new GcsProtocol(options.endpoints, options);
    case 'multipart':
      return new MultipartProtocol(options.endpoints, options);
    case 'object':
      return new ObjectProtocol(options.endpoints, options);
  }
}

/** The words of the command a user runs again to continue. */
function again(io: CliIo): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['ferry', ...io.argv].map(quote).join(' ');
}

/** Runs one `ferry` command; the exit code. Errors print as one line on stderr. */
export async function runCli(io: CliIo): Promise<number> {
  let command: Command;
  try {
    command = parseCommand(io.argv, io.env);
  } catch (err) {
    return fail(io, err);
  }
  if (command.kind === 'help') {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command.kind === 'version') {
    io.stdout.write(`ferry ${VERSION}\n`);
    return 0;
  }
  const { options } = command;
  const protocol = client(options.protocol, options);
  try {
    switch (command.kind) {
      case 'upload': {
        const file = localFile(command.file);
        startSha256(file); // for the check against the catalog at the end, beside the upload
        const progress = createProgress(options.progress, io.stderr, command.file, command.name);
        const r = await protocol.upload(file, command.name, { progress, signal: io.signal, options });
        io.stdout.write(
          r.alreadyComplete
            ? `${command.file} is already uploaded as ${r.name} (${formatBytes(r.size)}): nothing to send\n`
            : `uploaded ${command.file} to ${r.name} (${r.size} bytes${r.resumedAt > 0 ? `, resumed at ${r.resumedAt}` : ''})\n`,
        );
        return 0;
      }
      case 'download': {
        const progress = createProgress(options.progress, io.stderr, command.file, command.name);
        const r = await protocol.download(command.name, command.file, { progress, signal: io.signal, options });
        io.stdout.write(
          r.resumedAt === r.size
            ? `${command.file} already holds ${command.name} (${r.size} bytes, sha256 checked): nothing to download\n`
            : `downloaded ${command.name} to ${command.file} (${r.size} bytes${r.resumedAt > 0 ? `, resumed at ${r.resumedAt}` : ''})\n`,
        );
        return 0;
      }
      case 'status': {
        const s = await protocol.status(command.name);
        io.stdout.write(
          `${JSON.stringify({ name: s.name, protocol: options.protocol, committed: s.committed, complete: s.complete, ...(s.details ?? {}) })}\n`,
        );
        return 0;
      }
    }
  } catch (err) {
    if (err instanceof InterruptedError) {
      io.stderr.write(`${err.message}; to continue, run again:\n  ${again(io)}\n`);
      return err.exitCode;
    }
    return fail(io, err);
  } finally {
    protocol.close();
  }
}

function fail(io: CliIo, err: unknown): number {
  if (err instanceof CliError) {
    io.stderr.write(`ferry: ${err.message}\n`);
    return err.exitCode;
  }
  // a bug: still one line, with what it was
  io.stderr.write(`ferry: unexpected error: ${(err as Error)?.stack?.split('\n')[0] ?? String(err)}\n`);
  return 1;
}
