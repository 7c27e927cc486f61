import type { Request } from 'express';
import type { Authenticator, Principal } from '@ferry/auth';

/** The caller of a control-plane route, from its bearer token (401 without one). */
export function principalOf(auth: Authenticator, req: Request): Principal {
  return auth.authenticateBearer(req.headers.authorization);
}
