import { createHash, timingSafeEqual } from 'node:crypto';
import type { ClientConfig } from '@ferry/config';
import { PermissionDeniedError, UnauthenticatedError } from '@ferry/errors';
import { HawkRequest, NonceStore, parseHawkHeader, verifyHawk } from './hawk';
import { satisfiesScope } from './scopes';

export interface Principal {
  clientId: string;
  scopes: readonly string[];
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Checks bearer tokens against the configured clients and scopes against what they hold.
 * Tokens are compared by their sha256 in constant time.
 */
export class Authenticator {
  private readonly clients: { tokenDigest: Buffer; principal: Principal }[];
  private readonly byId: Map<string, { key: string; principal: Principal }>;

  private readonly anonymous?: Principal;

  /** @param anonymousScopes what a request without credentials may do; undefined: it is refused. */
  constructor(clients: readonly ClientConfig[], anonymousScopes?: readonly string[]) {
    this.anonymous = anonymousScopes ? { clientId: 'anonymous', scopes: [...anonymousScopes] } : undefined;
    this.clients = clients.map((c) => ({
      tokenDigest: digest(c.accessToken),
      principal: { clientId: c.clientId, scopes: [...c.scopes] },
    }));
    this.byId = new Map(clients.map((c, i) => [c.clientId, { key: c.accessToken, principal: this.clients[i].principal }]));
  }

  /**
   * Authenticates an `Authorization` header that is either `Bearer <token>` or Hawk (sha256, what
   * Taskcluster clients send) for the request `req`; nonces are remembered in `nonces`.
   */
  async authenticate(header: string | undefined, req: HawkRequest, nonces: NonceStore, nowMs = Date.now()): Promise<Principal> {
    const hawk = header ? parseHawkHeader(header) : undefined;
    if (!hawk) return this.authenticateBearer(header);
    const client = this.byId.get(hawk.id);
    if (!client) throw new UnauthenticatedError('Hawk: unknown client');
    await verifyHawk(hawk, client.key, req, nonces, nowMs);
    return restrictByExt(client.principal, hawk.ext);
  }

  /** Authenticates an `Authorization` header value (`Bearer <token>`); none: the anonymous principal, if configured. */
  authenticateBearer(header: string | undefined): Principal {
    if (!header && this.anonymous) return this.anonymous;
    if (!header) throw new UnauthenticatedError('missing credentials: send "authorization: Bearer <token>" (or Hawk)');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new UnauthenticatedError('malformed authorization header: expected "Bearer <token>"');
    const presented = digest(match[1]);
    let found: Principal | undefined;
    for (const c of this.clients) {
      if (timingSafeEqual(c.tokenDigest, presented)) found = c.principal;
    }
    if (!found) throw new UnauthenticatedError('invalid credentials');
    return found;
  }

  /** Whether some configured client holds a scope that covers `required` (what an anonymous caller may be told is possible). */
  someClientHolds(required: string): boolean {
    return [...this.clients.map((c) => c.principal), ...(this.anonymous ? [this.anonymous] : [])].some((p) => satisfiesScope(p.scopes, required));
  }

  /** Throws PermissionDeniedError unless the principal holds a scope that covers `required`. */
  require(principal: Principal, required: string): void {
    if (!satisfiesScope(principal.scopes, required)) {
      throw new PermissionDeniedError(`client ${principal.clientId} lacks scope ${required}`);
    }
  }
}

/**
 * Taskcluster clients send `ext` = base64(JSON) with optional `authorizedScopes` (the caller limits
 * itself to these; each must be covered by the client's own scopes) and `certificate` (temporary
 * credentials, which Ferry does not issue, so refuses).
 */
function restrictByExt(principal: Principal, ext: string | undefined): Principal {
  if (!ext) return principal;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(ext, 'base64').toString('utf8'));
  } catch {
    throw new UnauthenticatedError('Hawk: ext is not base64-encoded JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) throw new UnauthenticatedError('Hawk: ext must be a JSON object');
  const { certificate, authorizedScopes } = parsed as { certificate?: unknown; authorizedScopes?: unknown };
  if (certificate !== undefined) throw new UnauthenticatedError('temporary credentials (ext.certificate) are not supported');
  if (authorizedScopes === undefined) return principal;
  if (!Array.isArray(authorizedScopes) || !authorizedScopes.every((x): x is string => typeof x === 'string')) {
    throw new UnauthenticatedError('Hawk: ext.authorizedScopes must be an array of strings');
  }
  const beyond = authorizedScopes.find((scope) => !satisfiesScope(principal.scopes, scope));
  if (beyond !== undefined) throw new UnauthenticatedError(`ext.authorizedScopes asks for ${beyond}, which client ${principal.clientId} does not have`);
  return { clientId: principal.clientId, scopes: authorizedScopes };
}
