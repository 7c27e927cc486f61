import * as grpc from '@grpc/grpc-js';
import { AuthError, CliError, NotFoundError, RefusedError, TransientError } from './errors';

/** Channel options of the CLI's gRPC clients: messages up to 16 MiB each way (ingest-grpc's limit). */
export const GRPC_CLIENT_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.max_send_message_length': 16 * 1024 * 1024,
};

/** The call metadata of a bearer token. */
export function bearerMetadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A gRPC failure as the CLI's typed error (one line: the server's own words). */
export function fromGrpc(where: string, err: unknown): CliError {
  if (err instanceof CliError) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== 'number') return new TransientError(`${where}: ${(err as Error)?.message ?? String(err)}`);
  const line = `${where}: ${grpc.status[e.code]}: ${(e.details ?? '').split('\n')[0]}`;
  switch (e.code) {
    case grpc.status.UNAUTHENTICATED:
      return new AuthError(`${line} (check FERRY_TOKEN or --token)`);
    case grpc.status.PERMISSION_DENIED:
      return new AuthError(line);
    case grpc.status.NOT_FOUND:
      return new NotFoundError(line);
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.FAILED_PRECONDITION:
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.OUT_OF_RANGE:
    case grpc.status.UNIMPLEMENTED:
      return new RefusedError(line);
    default:
      // UNAVAILABLE, ABORTED (a killed writer's lease), DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED...
      return new TransientError(line);
  }
}
