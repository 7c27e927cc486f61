import type { Request } from 'express';
import type { Authenticator, HawkEndpoint, HawkRequest, NonceStore, Principal } from '@ferry/auth';
import { rawBodyOf } from './body';

/**
 * The caller, from a Hawk (Taskcluster clients) or bearer Authorization header (401 without).
 * A payload hash in a Hawk header is checked against the JSON body as received.
 */
export function principalOf(
  auth: Authenticator,
  nonces: NonceStore,
  req: Request,
  publicEndpoint: HawkEndpoint | undefined,
): Promise<Principal> {
  return auth.authenticate(req.headers.authorization, hawkRequestOf(req, publicEndpoint), nonces);
}

/**
 * What a Hawk client signed, as the request shows it.
 *
 * A Hawk client signs the host and port of the URL it calls: the host of the Host header, and the
 * port as Taskcluster finds it (libraries/api, remoteAuthentication): a proxy's X-Forwarded-Port
 * (the first, for a chain of proxies), else the Host header's port, else the default port of the
 * scheme the connection, or a proxy's X-Forwarded-Proto, reports. Taskcluster takes 443 for
 * X-Forwarded-Proto https even when the Host header has a port (a proxy that adds its own): that
 * endpoint is accepted as well. Through a proxy that terminates TLS the client may also have signed
 * the public URL (`publicEndpoint`, see hawkEndpointOf), while the request arrives over plain HTTP
 * with another Host: accepted too.
 */
export function hawkRequestOf(req: Request, publicEndpoint: HawkEndpoint | undefined): HawkRequest {
  const [host, hostPort] = (req.headers.host ?? '').split(/:(?=\d+$)/);
  const proto = firstForwarded(req.headers['x-forwarded-proto'])?.toLowerCase();
  const forwardedPort = Number(firstForwarded(req.headers['x-forwarded-port']));
  const viaForwardedPort = Number.isInteger(forwardedPort) && forwardedPort > 0 && forwardedPort <= 65535;
  const port = viaForwardedPort ? forwardedPort : hostPort ? Number(hostPort) : defaultPort(proto || req.protocol);
  const alsoSignedFor: HawkEndpoint[] = [];
  if (!viaForwardedPort && proto === 'https' && port !== 443) alsoSignedFor.push({ host: host ?? '', port: 443 });
  if (publicEndpoint) alsoSignedFor.push(publicEndpoint);
  return {
    method: req.method,
    resource: req.originalUrl,
    host: host ?? '',
    port,
    alsoSignedFor,
    contentType: req.headers['content-type'],
    payload: rawBodyOf(req),
  };
}

/** The host and port clients sign for when they call the configured public URL (FERRY_PUBLIC_URL_OBJECT). */
export function hawkEndpointOf(publicUrl: string | undefined): HawkEndpoint | undefined {
  if (!publicUrl) return undefined;
  const u = new URL(publicUrl);
  return { host: u.hostname, port: u.port ? Number(u.port) : defaultPort(u.protocol.slice(0, -1)) };
}

/** The first value of an X-Forwarded-* header (a chain of proxies appends theirs: the first is the client's). */
function firstForwarded(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  return value?.split(',')[0].trim() || undefined;
}

function defaultPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}
