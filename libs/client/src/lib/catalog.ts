import { createHmac, randomBytes } from 'node:crypto';
import type { Endpoints } from './args';
import { AuthError, NotFoundError, RefusedError, TransientError } from './errors';
import { connectionError } from './transfer';

/**
 * A Hawk `Authorization` header (hawk.1.header, sha256 MAC) as Taskcluster clients sign requests:
 * the object API's credentials (clientId / accessToken).
 */
export function hawkHeader(url: string, method: string, id: string, key: string, now = Date.now()): string {
  const u = new URL(url);
  const ts = Math.floor(now / 1000);
  const nonce = randomBytes(6).toString('base64url');
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  const normalized = [
    'hawk.1.header',
    ts,
    nonce,
    method.toUpperCase(),
    u.pathname + u.search,
    u.hostname.toLowerCase(),
    port,
    '',
    '',
    '',
  ].join('\n');
  const mac = createHmac('sha256', key).update(normalized).digest('base64');
  return `Hawk id="${id}", ts="${ts}", nonce="${nonce}", mac="${mac}"`;
}

/** An object API call signed with Hawk; the JSON answer, or a typed error. */
export async function objectApi(
  endpoints: Endpoints,
  method: string,
  path: string,
  body?: unknown,
  credentials = 'TASKCLUSTER_CLIENT_ID / TASKCLUSTER_ACCESS_TOKEN',
): Promise<unknown> {
  const url = `${endpoints.objectUrl}/api/object/v1${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: hawkHeader(url, method, endpoints.clientId, endpoints.accessToken),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw connectionError(`object API at ${endpoints.objectUrl}`, err);
  }
  const text = await res.text();
  let json: { message?: string; code?: string } | undefined;
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    json = undefined;
  }
  if (res.ok) return json;
  const message = `object API: ${res.status} ${json?.code ?? ''} ${(json?.message ?? text).split('\n')[0]}`.replace(/\s+/g, ' ').trim();
  if (res.status === 401 || res.status === 403) throw new AuthError(`${message} (check ${credentials})`);
  if (res.status === 404) throw new NotFoundError(message);
  if (res.status >= 500 || res.status === 429) throw new TransientError(message);
  throw new RefusedError(message);
}

/** The sha256 the catalog records for `name` (any protocol's upload is in the one catalog). */
export async function catalogSha256(endpoints: Endpoints, name: string): Promise<string | undefined> {
  const meta = (await objectApi(endpoints, 'GET', `/metadata/${encodeURIComponent(name)}`)) as { hashes?: { sha256?: string } };
  return meta?.hashes?.sha256;
}
