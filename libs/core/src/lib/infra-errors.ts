import { FerryError, ResourceExhaustedError, UnavailableError } from '@ferry/errors';

/**
 * Turns failures of the infrastructure (Redis unreachable, disk full) into the domain errors
 * clients can act on (retry later), instead of an opaque INTERNAL. Other errors pass through.
 */
export function classifyInfraError(err: unknown): unknown {
  if (err instanceof FerryError || !(err instanceof Error)) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new ResourceExhaustedError('storage is full', { cause: err });
  if (
    err.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Cluster isn't ready|CLUSTERDOWN|Failed to refresh slots cache/.test(
      err.message,
    ) ||
    code === 'ECONNREFUSED'
  ) {
    return new UnavailableError('a dependency (Redis) is unavailable; retry', { cause: err });
  }
  return err;
}
