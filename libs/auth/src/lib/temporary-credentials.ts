import { createHmac, timingSafeEqual } from 'node:crypto';
import { UnauthenticatedError } from '@ferry/errors';
import { satisfiesScope } from './scopes';

/**
 * Taskcluster's temporary credentials and `authorizedScopes`, as Taskcluster clients send them in
 * Hawk's `ext` (base64 of a JSON object; in the Authorization header or in a bewit).
 *
 * A certificate is issued by a permanent client (`createTemporaryCredentials` in the clients): its
 * signature is an HMAC-SHA256 with the issuer's accessToken over `version:1`, (for named temporary
 * clients `clientId:<name>`, `issuer:<issuer>`), `seed:`, `start:`, `expiry:`, `scopes:` and each
 * scope, joined by newlines. The temporary accessToken, which signs the Hawk requests, is
 * base64url(HMAC-SHA256(issuer's accessToken, seed)) without padding. Nothing is stored: the
 * certificate travels with every request.
 */
export interface TemporaryCertificate {
  version: 1;
  /** 44 characters (two slugids). */
  seed: string;
  /** Validity, ms since the epoch. */
  start: number;
  expiry: number;
  scopes: string[];
  /** base64 HMAC-SHA256, see above. */
  signature: string;
  /** The permanent client that issued named temporary credentials (the Hawk id is then their own clientId). */
  issuer?: string;
}

export interface HawkExt {
  certificate?: TemporaryCertificate;
  /** The caller restricts itself to these scopes (each must be covered by what its credentials hold). */
  authorizedScopes?: string[];
}

/** The permanent client a Hawk id (or a certificate's issuer) names. */
export interface IssuingClient {
  clientId: string;
  accessToken: string;
  scopes: readonly string[];
}

/** Taskcluster accepts certificates whose start is up to 5 minutes ahead and whose expiry up to 5 minutes past. */
export const CERTIFICATE_SKEW_MS = 5 * 60_000;
/** At most this long between a certificate's start and expiry (31 days), as in Taskcluster. */
export const CERTIFICATE_MAX_SPAN_MS = 31 * 24 * 3600_000;

/** Taskcluster's valid scope: a string of printable ASCII. */
const validScope = (s: unknown): s is string => typeof s === 'string' && /^[\x20-\x7e]*$/.test(s);

/** Parses Hawk's `ext` (undefined or empty: none). UnauthenticatedError (401) says what is malformed. */
export function parseExt(ext: string | undefined): HawkExt {
  if (!ext) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(ext, 'base64').toString('utf8'));
  } catch {
    throw new UnauthenticatedError('Hawk: ext is not base64-encoded JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new UnauthenticatedError('Hawk: ext must be a JSON object');
  const { certificate, authorizedScopes } = parsed as Record<string, unknown>;
  const result: HawkExt = {};
  if (certificate !== undefined && certificate !== null) result.certificate = parseCertificate(certificate);
  if (authorizedScopes !== undefined && authorizedScopes !== null) {
    if (!Array.isArray(authorizedScopes) || !authorizedScopes.every(validScope)) {
      throw new UnauthenticatedError('ext.authorizedScopes must be an array of scopes (strings of printable ASCII)');
    }
    result.authorizedScopes = authorizedScopes;
  }
  return result;
}

function parseCertificate(cert: unknown): TemporaryCertificate {
  const bad = (why: string) => new UnauthenticatedError(`temporary credentials: ext.certificate${why}`);
  if (typeof cert !== 'object' || cert === null || Array.isArray(cert)) throw bad(' must be a JSON object');
  const c = cert as Record<string, unknown>;
  if (c['version'] !== 1) throw bad('.version must be 1');
  if (typeof c['seed'] !== 'string' || c['seed'].length !== 44) throw bad('.seed must be a string of 44 characters');
  if (typeof c['start'] !== 'number' || !Number.isFinite(c['start'])) throw bad('.start must be a number (ms since the epoch)');
  if (typeof c['expiry'] !== 'number' || !Number.isFinite(c['expiry'])) throw bad('.expiry must be a number (ms since the epoch)');
  if (!Array.isArray(c['scopes']) || !c['scopes'].every(validScope))
    throw bad('.scopes must be an array of scopes (strings of printable ASCII)');
  if (typeof c['signature'] !== 'string') throw bad('.signature must be a string');
  if (c['issuer'] !== undefined && typeof c['issuer'] !== 'string') throw bad('.issuer must be a string');
  // a name is signed, not carried: a clientId field only makes sense beside an issuer
  if ('clientId' in c && c['issuer'] === undefined) throw bad('.clientId must only be used with ext.certificate.issuer');
  return {
    version: 1,
    seed: c['seed'],
    start: c['start'],
    expiry: c['expiry'],
    scopes: c['scopes'],
    signature: c['signature'],
    ...(c['issuer'] !== undefined ? { issuer: c['issuer'] as string } : {}),
  };
}

/**
 * The signatures a certificate may carry, for temporary credentials named `clientId` (the Hawk id).
 * One, except for a certificate without scopes: the Node and Python clients then sign `scopes:\n`
 * (a newline, then the scopes joined by newlines) where the lines joined by newlines end in
 * `scopes:`; both are accepted.
 */
export function certificateSignatures(
  cert: Omit<TemporaryCertificate, 'signature'>,
  clientId: string,
  issuerAccessToken: string,
): string[] {
  const lines = [
    'version:1',
    ...(cert.issuer !== undefined ? [`clientId:${clientId}`, `issuer:${cert.issuer}`] : []),
    `seed:${cert.seed}`,
    `start:${cert.start}`,
    `expiry:${cert.expiry}`,
    'scopes:',
    ...cert.scopes,
  ].join('\n');
  const sign = (text: string) => createHmac('sha256', issuerAccessToken).update(text).digest('base64');
  return cert.scopes.length === 0 ? [sign(lines), sign(`${lines}\n`)] : [sign(lines)];
}

/** The accessToken of temporary credentials: base64url (no padding) of HMAC-SHA256(issuer's accessToken, seed). */
export function temporaryAccessToken(issuerAccessToken: string, seed: string): string {
  return createHmac('sha256', issuerAccessToken).update(seed).digest('base64url');
}

/**
 * Verifies a certificate presented under the Hawk id `clientId`, issued by `issuer` (the client the
 * Hawk id names, or the certificate's `issuer` for named temporary credentials), at `nowMs`.
 * Returns the key the request must be signed with and the scopes of the temporary client; throws
 * UnauthenticatedError saying what is wrong: a signature that does not match (tampered), a
 * certificate not yet started or expired (5 minutes of skew each way), one spanning more than 31
 * days, a named one whose issuer lacks `auth:create-client:<clientId>`, scopes the issuer lacks.
 */
export function verifyCertificate(
  cert: TemporaryCertificate,
  clientId: string,
  issuer: IssuingClient,
  nowMs: number,
): { key: string; scopes: string[] } {
  // the signature first: what an unsigned certificate claims is not worth an answer
  const given = Buffer.from(cert.signature);
  const signed = certificateSignatures(cert, clientId, issuer.accessToken).some((signature) => {
    const expected = Buffer.from(signature);
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
  if (!signed) {
    throw new UnauthenticatedError(
      cert.issuer !== undefined
        ? `temporary credentials: ext.certificate.signature is not valid (tampered, or not issued by ${issuer.clientId} for clientId ${clientId})`
        : `temporary credentials: ext.certificate.signature is not valid (tampered, or not issued by ${issuer.clientId})`,
    );
  }
  if (cert.start > nowMs + CERTIFICATE_SKEW_MS) {
    throw new UnauthenticatedError(
      `temporary credentials are not valid yet: they start at ${isoOf(cert.start)} (server time ${isoOf(nowMs)})`,
    );
  }
  if (cert.expiry < nowMs - CERTIFICATE_SKEW_MS) {
    throw new UnauthenticatedError(`temporary credentials expired at ${isoOf(cert.expiry)} (server time ${isoOf(nowMs)})`);
  }
  if (cert.expiry - cert.start > CERTIFICATE_MAX_SPAN_MS) {
    throw new UnauthenticatedError('temporary credentials cannot last longer than 31 days (ext.certificate expiry - start)');
  }
  if (cert.issuer !== undefined) {
    const create = `auth:create-client:${clientId}`;
    if (!satisfiesScope(issuer.scopes, create)) {
      throw new UnauthenticatedError(
        `temporary credentials: issuer ${issuer.clientId} lacks scope ${create}, needed to name temporary credentials ${clientId}`,
      );
    }
  }
  const beyond = cert.scopes.filter((scope) => !satisfiesScope(issuer.scopes, scope));
  if (beyond.length > 0) {
    throw new UnauthenticatedError(
      `temporary credentials: issuer ${issuer.clientId} does not have the certificate's scopes ${beyond.join(', ')} (over-scoped certificate)`,
    );
  }
  return { key: temporaryAccessToken(issuer.accessToken, cert.seed), scopes: [...cert.scopes] };
}

/**
 * The scopes a request with `authorizedScopes` acts with: exactly those, each of which must be
 * covered by what its credentials (permanent, or a certificate's) hold; 401 otherwise.
 */
export function restrictToAuthorizedScopes(clientId: string, held: readonly string[], authorizedScopes: readonly string[]): string[] {
  const beyond = authorizedScopes.filter((scope) => !satisfiesScope(held, scope));
  if (beyond.length > 0) {
    throw new UnauthenticatedError(`ext.authorizedScopes asks for ${beyond.join(', ')}, which the credentials of ${clientId} do not have`);
  }
  return [...authorizedScopes];
}

function isoOf(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}
