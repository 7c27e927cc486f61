import { createHmac, timingSafeEqual } from 'node:crypto';
import { UnauthenticatedError } from '@ferry/errors';

/** Remembers nonces so a Hawk request cannot be replayed (one `claim` per nonce succeeds). */
export interface NonceStore {
  /** True the first time `key` is claimed within `ttlSeconds`, false afterwards. */
  claim(key: string, ttlSeconds: number): Promise<boolean>;
}

/** What the server saw of a request, as Hawk signs it. */
export interface HawkRequest {
  method: string;
  /** Path and query, exactly as sent. */
  resource: string;
  /** The Host header's host and port (the port defaults from the scheme). */
  host: string;
  port: number;
  /**
   * Other host and port the client may have signed for: the public URL of a server behind a proxy
   * (clients sign the URL they call, the proxy's; the request arrives at another).
   */
  alsoSignedFor?: { host: string; port: number };
}

export interface HawkAttributes {
  id: string;
  ts: string;
  nonce: string;
  mac: string;
  hash?: string;
  ext?: string;
  app?: string;
  dlg?: string;
}

/** Hawk accepts timestamps this far from the server's clock, either way (Hawk's own default). */
export const HAWK_SKEW_SECONDS = 60;

/** Parses `Hawk id="..", ts="..", ...`; undefined if the header is not a Hawk header. */
export function parseHawkHeader(header: string): HawkAttributes | undefined {
  const m = /^Hawk\s+(.*)$/i.exec(header.trim());
  if (!m) return undefined;
  const attrs: Record<string, string> = {};
  const rest = m[1].replace(/(\w+)="([^"\\]*)"\s*(?:,\s*|$)/g, (_all, key: string, value: string) => {
    if (!['id', 'ts', 'nonce', 'hash', 'ext', 'mac', 'app', 'dlg'].includes(key)) throw new UnauthenticatedError(`Hawk: unknown attribute ${key}`);
    if (key in attrs) throw new UnauthenticatedError(`Hawk: duplicate attribute ${key}`);
    attrs[key] = value;
    return '';
  });
  if (rest.trim() !== '') throw new UnauthenticatedError('Hawk: malformed authorization header');
  for (const required of ['id', 'ts', 'nonce', 'mac']) {
    if (!attrs[required]) throw new UnauthenticatedError(`Hawk: missing attribute ${required}`);
  }
  return attrs as unknown as HawkAttributes;
}

/** The request MAC of Hawk 1 (`hawk.1.header`), base64 HMAC of the normalized string. */
export function hawkMac(key: string, algorithm: 'sha256', a: Omit<HawkAttributes, 'id' | 'mac'>, req: HawkRequest): string {
  let normalized =
    `hawk.1.header\n${a.ts}\n${a.nonce}\n${req.method.toUpperCase()}\n${req.resource}\n${req.host.toLowerCase()}\n${req.port}\n` +
    `${a.hash ?? ''}\n${(a.ext ?? '').replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`;
  if (a.app) normalized += `${a.app}\n${a.dlg ?? ''}\n`;
  return createHmac(algorithm, key).update(normalized).digest('base64');
}

/**
 * Verifies a Hawk (sha256) request against a client's key: the MAC over method, resource, host,
 * port, timestamp, nonce (and payload hash and ext when sent), the timestamp within
 * HAWK_SKEW_SECONDS of now, and the nonce never seen before for this client and timestamp.
 * Throws UnauthenticatedError (401) saying what failed.
 */
export async function verifyHawk(
  attrs: HawkAttributes,
  key: string,
  req: HawkRequest,
  nonces: NonceStore,
  nowMs = Date.now(),
): Promise<void> {
  const given = Buffer.from(attrs.mac);
  const matches = (endpoint: HawkRequest) => {
    const expected = Buffer.from(hawkMac(key, 'sha256', attrs, endpoint));
    return expected.length === given.length && timingSafeEqual(expected, given);
  };
  if (!matches(req) && !(req.alsoSignedFor && matches({ ...req, ...req.alsoSignedFor }))) {
    throw new UnauthenticatedError('Hawk: bad mac (wrong credentials, or the request was altered)');
  }
  const ts = /^\d{1,12}$/.test(attrs.ts) ? Number(attrs.ts) : NaN;
  if (!Number.isFinite(ts) || Math.abs(ts - nowMs / 1000) > HAWK_SKEW_SECONDS) {
    throw new UnauthenticatedError(`Hawk: stale timestamp (server time ${Math.floor(nowMs / 1000)}); check the client's clock`);
  }
  if (!(await nonces.claim(`${attrs.id}\n${attrs.ts}\n${attrs.nonce}`, 2 * HAWK_SKEW_SECONDS))) {
    throw new UnauthenticatedError('Hawk: nonce already used (replayed request)');
  }
}
