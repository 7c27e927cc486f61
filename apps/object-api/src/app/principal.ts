import type { Request } from 'express';
import type { Authenticator, NonceStore, Principal } from '@ferry/auth';

/** The caller, from a Hawk (Taskcluster clients) or bearer Authorization header (401 without). */
export function principalOf(auth: Authenticator, nonces: NonceStore, req: Request): Promise<Principal> {
  const [host, port] = (req.headers.host ?? '').split(/:(?=\d+$)/);
  return auth.authenticate(
    req.headers.authorization,
    { method: req.method, resource: req.originalUrl, host: host ?? '', port: port ? Number(port) : req.protocol === 'https' ? 443 : 80 },
    nonces,
  );
}
