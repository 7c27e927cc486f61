import { parseArgs } from 'node:util';
import { UsageError } from './errors';

export const PROTOCOLS = ['bytestream', 'gcs', 'multipart', 'object', 'tus'] as const;
export type ProtocolName = (typeof PROTOCOLS)[number];
/** The protocols this build of `ferry` speaks (the others are refused with a clear line). */
export const IMPLEMENTED: readonly ProtocolName[] = PROTOCOLS;

export type ProgressMode = 'auto' | 'bar' | 'json' | 'quiet';

/** Where the servers are and who the client is. */
export interface Endpoints {
  /** host:port of ingest-grpc (ByteStream, GCS v2). */
  grpcAddress: string;
  /** Base URL of multipart-api (multipart, tus). */
  multipartUrl: string;
  /** Taskcluster root URL of object-api. */
  objectUrl: string;
  /** Bearer token (ByteStream, GCS, multipart, tus). */
  token: string;
  /** Hawk credentials (object API, and the catalog's sha256). */
  clientId: string;
  accessToken: string;
}

export interface Options {
  protocol: ProtocolName;
  endpoints: Endpoints;
  progress: ProgressMode;
  /** Print nothing but errors (and the result line). */
  quiet: boolean;
  parallel: number;
  /** Bytes per second, 0 for no limit (hidden; for tests and demos). */
  rateLimit: number;
  stateDir: string;
}

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'upload'; file: string; name: string; options: Options }
  | { kind: 'download'; name: string; file: string; options: Options }
  | { kind: 'status'; name: string; options: Options };

export const USAGE = `usage:
  ferry upload   [options] <file> <name>    upload a file (resumes an interrupted upload of it)
  ferry download [options] <name> <file>    download (resumes a partial local file)
  ferry status   [options] <name>           what the server holds under a name, or of an upload
                                            in progress from here to <name> (one JSON line)

options:
  -p, --protocol <p>       bytestream (default), gcs, multipart, object, tus
      --json               progress as JSON lines on stderr
      --progress           a progress bar even when stderr is not a terminal
  -q, --quiet              no progress and no notes, only errors and the result
      --parallel <n>       parts in parallel (multipart)
      --grpc-address <a>   ingest-grpc host:port     (FERRY_GRPC_ADDRESS, default 127.0.0.1:50051)
      --multipart-url <u>  multipart-api base URL    (FERRY_MULTIPART_URL, default http://127.0.0.1:8081)
      --object-url <u>     object-api root URL       (FERRY_OBJECT_URL or TASKCLUSTER_ROOT_URL, default http://127.0.0.1:8080)
      --token <t>          bearer token              (FERRY_TOKEN, default dev-secret)
      --client-id <id>     Taskcluster clientId      (TASKCLUSTER_CLIENT_ID, default dev)
      --access-token <t>   Taskcluster accessToken   (TASKCLUSTER_ACCESS_TOKEN, default dev-secret)
      --state-dir <dir>    resume state              (FERRY_STATE_DIR, default ~/.local/state/ferry)
  -h, --help

exit codes: 0 done, 2 usage, 3 local file, 4 credentials, 5 refused, 6 not found,
            7 unreachable or kept failing (run it again to resume), 8 sha256 mismatch, 130 interrupted`;

/** `4M`, `512k`, `1G` or a number of bytes. */
export function parseBytes(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what}: "${text}" is not a number of bytes (like 4M)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.floor(Number(m[1]) * unit);
}

function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const home = env.HOME ?? env.USERPROFILE ?? '.';
  return env.XDG_STATE_HOME ? `${env.XDG_STATE_HOME}/ferry` : `${home}/.local/state/ferry`;
}

/** Parses `argv` (without node and the script) with the environment's defaults. */
export function parseCommand(argv: string[], env: NodeJS.ProcessEnv): Command {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (ferry --help)`);
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { kind: 'help' };
  if (v.version) return { kind: 'version' };
  const [cmd, ...rest] = positionals;
  if (!cmd) throw new UsageError('no command: ferry upload|download|status ... (ferry --help)');

  const protocol = (v.protocol ?? env.FERRY_PROTOCOL ?? 'bytestream') as ProtocolName;
  if (!PROTOCOLS.includes(protocol)) {
    throw new UsageError(`unknown protocol "${protocol}": use one of ${PROTOCOLS.join(', ')}`);
  }
  if (!IMPLEMENTED.includes(protocol)) {
    throw new UsageError(`protocol "${protocol}" is not implemented by this ferry yet: use ${IMPLEMENTED.join(' or ')}`);
  }
  const host = env.FERRY_HOST ?? '127.0.0.1';
  const parallel = Number(v.parallel ?? '4');
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64)
    throw new UsageError(`--parallel: "${v.parallel}" is not a number from 1 to 64`);
  const progress: ProgressMode = v.quiet ? 'quiet' : v.json ? 'json' : v.progress ? 'bar' : 'auto';
  const options: Options = {
    protocol,
    endpoints: {
      grpcAddress: v['grpc-address'] ?? env.FERRY_GRPC_ADDRESS ?? `${host}:${env.FERRY_GRPC_PORT ?? 50051}`,
      multipartUrl: trimSlash(v['multipart-url'] ?? env.FERRY_MULTIPART_URL ?? `http://${host}:${env.FERRY_MULTIPART_PORT ?? 8081}`),
      objectUrl: trimSlash(
        v['object-url'] ?? env.FERRY_OBJECT_URL ?? env.TASKCLUSTER_ROOT_URL ?? `http://${host}:${env.FERRY_OBJECT_PORT ?? 8080}`,
      ),
      token: v.token ?? env.FERRY_TOKEN ?? 'dev-secret',
      clientId: v['client-id'] ?? env.TASKCLUSTER_CLIENT_ID ?? 'dev',
      accessToken: v['access-token'] ?? env.TASKCLUSTER_ACCESS_TOKEN ?? env.FERRY_TOKEN ?? 'dev-secret',
    },
    progress,
    quiet: v.quiet ?? false,
    parallel,
    rateLimit: parseBytes(v['rate-limit'] ?? env.FERRY_RATE_LIMIT ?? '0', '--rate-limit'),
    stateDir: v['state-dir'] ?? env.FERRY_STATE_DIR ?? defaultStateDir(env),
  };
  const need = (n: number, usage: string) => {
    if (rest.length !== n) throw new UsageError(`usage: ferry ${cmd} [options] ${usage}`);
  };
  switch (cmd) {
    case 'upload':
      need(2, '<file> <name>');
      return { kind: 'upload', file: rest[0], name: rest[1], options };
    case 'download':
      need(2, '<name> <file>');
      return { kind: 'download', name: rest[0], file: rest[1], options };
    case 'status':
      need(1, '<name>');
      return { kind: 'status', name: rest[0], options };
    default:
      throw new UsageError(`unknown command "${cmd}": use upload, download or status (ferry --help)`);
  }
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      protocol: { type: 'string', short: 'p' },
      json: { type: 'boolean' },
      progress: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      parallel: { type: 'string' },
      'grpc-address': { type: 'string' },
      'multipart-url': { type: 'string' },
      'object-url': { type: 'string' },
      token: { type: 'string' },
      'client-id': { type: 'string' },
      'access-token': { type: 'string' },
      'state-dir': { type: 'string' },
      'rate-limit': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
}
