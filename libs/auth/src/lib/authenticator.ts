import { createHash, timingSafeEqual } from 'node:crypto';
import type { ClientConfig } from '@ferry/config';
import { PermissionDeniedError, UnauthenticatedError } from '@ferry/errors';
import { HawkRequest, NonceStore, parseBewit, parseHawkHeader, splitBewit, verifyBewit, verifyHawk } from './hawk';
import { satisfiesScope } from './scopes';
import { parseExt, restrictToAuthorizedScopes, verifyCertificate } from './temporary-credentials';

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
   * Authenticates a request: its `Authorization` header, either `Bearer <token>` or Hawk (sha256,
   * what Taskcluster clients send; nonces are remembered in `nonces`), or a Hawk bewit in its query
   * (`?bewit=`, a signed GET URL). Hawk credentials may be temporary (a certificate in `ext`) and
   * restricted (`authorizedScopes` in `ext`), as Taskcluster's.
   */
  async authenticate(header: string | undefined, req: HawkRequest, nonces: NonceStore, nowMs = Date.now()): Promise<Principal> {
    const signedUrl = splitBewit(req.resource);
    if (signedUrl) {
      if (header) throw new UnauthenticatedError('a request is authenticated by a bewit or by an Authorization header, not both');
      const bewit = parseBewit(signedUrl.bewit);
      const { key, principal } = this.credentials(bewit.id, bewit.ext, nowMs);
      verifyBewit(bewit, key, { ...req, resource: signedUrl.resource }, nowMs);
      return principal;
    }
    const hawk = header ? parseHawkHeader(header) : undefined;
    if (!hawk) return this.authenticateBearer(header);
    const { key, principal } = this.credentials(hawk.id, hawk.ext, nowMs);
    await verifyHawk(hawk, key, req, nonces, nowMs);
    return principal;
  }

  /**
   * The key a Hawk request of `id` must be signed with, and who it then is: a configured client, or
   * temporary credentials (ext.certificate) issued by one (the client `id` names, or for named
   * temporary credentials the certificate's issuer); narrowed to ext.authorizedScopes when given.
   */
  private credentials(id: string, extText: string | undefined, nowMs: number): { key: string; principal: Principal } {
    const ext = parseExt(extText);
    const certificate = ext.certificate;
    if (certificate?.issuer === id)
      throw new UnauthenticatedError('temporary credentials: ext.certificate.issuer must differ from the clientId they name');
    const issuerId = certificate?.issuer ?? id;
    const client = this.byId.get(issuerId);
    if (!client)
      throw new UnauthenticatedError(
        certificate?.issuer !== undefined ? `temporary credentials: unknown issuer ${issuerId}` : 'Hawk: unknown client',
      );
    let key = client.key;
    let principal = client.principal;
    if (certificate) {
      const temporary = verifyCertificate(
        certificate,
        id,
        { clientId: issuerId, accessToken: client.key, scopes: client.principal.scopes },
        nowMs,
      );
      key = temporary.key;
      principal = { clientId: id, scopes: temporary.scopes };
    }
    if (ext.authorizedScopes)
      principal = {
        clientId: principal.clientId,
        scopes: restrictToAuthorizedScopes(principal.clientId, principal.scopes, ext.authorizedScopes),
      };
    return { key, principal };
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
    return [...this.clients.map((c) => c.principal), ...(this.anonymous ? [this.anonymous] : [])].some((p) =>
      satisfiesScope(p.scopes, required),
    );
  }

  /** Throws PermissionDeniedError unless the principal holds a scope that covers `required`. */
  require(principal: Principal, required: string): void {
    if (!satisfiesScope(principal.scopes, required)) {
      throw new PermissionDeniedError(`client ${principal.clientId} lacks scope ${required}`);
    }
  }
}
