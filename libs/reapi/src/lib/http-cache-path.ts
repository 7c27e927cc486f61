import { InvalidArgumentError, NotFoundError } from '@ferry/errors';

/** The two stores of Bazel's HTTP cache protocol: the action cache and the CAS. */
export type HttpCacheStore = 'ac' | 'cas';

/** What a request path of Bazel's HTTP cache names. */
export interface HttpCacheTarget {
  /** The REAPI instance name: the path's segments before `ac`/`cas`, joined by `/` ('' for none). */
  instance: string;
  store: HttpCacheStore;
  /** Lowercase SHA-256 hex: the action's hash (ac) or the blob's (cas). */
  hash: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Parses the path of a Bazel HTTP cache request: `[/{instance}]/ac/{sha256}` or
 * `[/{instance}]/cas/{sha256}`, the instance being what follows the host in `--remote_cache=http://host:port/team`
 * (any number of segments, percent-decoded; `/team/ci/ac/...` is instance `team/ci`). A query is
 * ignored, empty segments too (`//ac/...`). Another shape is NOT_FOUND (no such route); a key that
 * is not a SHA-256 is INVALID_ARGUMENT. The instance is checked by the service (ReapiInstances).
 */
export function parseHttpCachePath(path: string): HttpCacheTarget {
  const query = path.indexOf('?');
  const segments = (query >= 0 ? path.slice(0, query) : path).split('/').filter((s) => s !== '');
  const store = segments[segments.length - 2];
  if (segments.length < 2 || (store !== 'ac' && store !== 'cas')) {
    throw new NotFoundError(`no route ${JSON.stringify(path)}: this port serves [/{instance}]/ac/{sha256} and [/{instance}]/cas/{sha256}`);
  }
  const hash = segments[segments.length - 1];
  if (!SHA256_HEX.test(hash)) throw new InvalidArgumentError(`key ${JSON.stringify(hash)} is not a SHA-256 (64 lowercase hex digits)`);
  let instance: string;
  try {
    instance = segments
      .slice(0, -2)
      .map((s) => decodeURIComponent(s))
      .join('/');
  } catch {
    throw new InvalidArgumentError(`instance in ${JSON.stringify(path)} is not valid percent-encoding`);
  }
  return { instance, store, hash };
}
