import type { Request } from 'express';
import type { Authenticator, NonceStore, Principal } from '@ferry/auth';

export interface HawkEndpoint {
  host: string;
  port: number;
}

/**
 * The caller, from a Hawk (Taskcluster clients) or bearer Authorization header (401 without).
 *
 * A Hawk client signs the host and port of the URL it calls. Directly, that is the request's Host
 * (its port defaulting from the scheme the connection, or a proxy's X-Forwarded-Proto, reports).
 * Through a proxy that terminates TLS it is the public URL (`publicEndpoint`, see hawkEndpointOf),
 * while the request arrives over plain HTTP, often with a Host header without port: either is
 * accepted.
 */
export function principalOf(
  auth: Authenticator,
  nonces: NonceStore,
  req: Request,
  publicEndpoint: HawkEndpoint | undefined,
): Promise<Principal> {
  const [host, port] = (req.headers.host ?? '').split(/:(?=\d+$)/);
  const forwarded = req.headers['x-forwarded-proto'];
  const scheme = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0].trim() || req.protocol;
  const endpoint = { host: host ?? '', port: port ? Number(port) : defaultPort(scheme) };
  return auth.authenticate(
    req.headers.authorization,
    { method: req.method, resource: req.originalUrl, ...endpoint, alsoSignedFor: publicEndpoint },
    nonces,
  );
}

/** The host and port clients sign for when they call the configured public URL (FERRY_PUBLIC_URL_OBJECT). */
export function hawkEndpointOf(publicUrl: string | undefined): HawkEndpoint | undefined {
  if (!publicUrl) return undefined;
  const u = new URL(publicUrl);
  return { host: u.hostname, port: u.port ? Number(u.port) : defaultPort(u.protocol.slice(0, -1)) };
}

function defaultPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}
