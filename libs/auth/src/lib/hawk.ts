import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { UnauthenticatedError } from '@ferry/errors';

/*
 * Hawk 1 (sha256), as Taskcluster clients sign requests: the Authorization header and bewits
 * (`?bewit=`, signed GET URLs). Written here rather than taken from the `hawk` package (which the
 * tests keep as a devDependency, to sign exactly as clients do):
 * - a request may have been signed for more than one URL: the public URL of a proxy in front, or
 *   the host it reached; the request target as sent, or as Node's legacy url.parse() escaped it
 *   (see signedTargets). hawk.server.authenticate checks one URL a call, and would run the
 *   credential lookup (certificate checks included) and the nonce function again for each;
 * - its nonce callback runs before the timestamp check and gets neither the client id nor a
 *   lifetime, while Ferry's nonces are Redis keys that live exactly as long as their timestamp is
 *   acceptable;
 * - its errors are Boom objects, to be translated into Ferry's typed errors anyway (Taskcluster's
 *   own validator does the same translation);
 * - it would bring four @hapi packages into every app's production bundle, for ~150 lines of a
 *   frozen protocol. The unit tests check this code against the hawk client library, and the app
 *   tests against the unmodified taskcluster-client.
 */

/** Remembers nonces so a Hawk request cannot be replayed (one `claim` per nonce succeeds). */
export interface NonceStore {
  /** True the first time `key` is claimed within `ttlSeconds`, false afterwards. */
  claim(key: string, ttlSeconds: number): Promise<boolean>;
}

/** What the server saw of a request, as Hawk signs it. */
export interface HawkRequest {
  method: string;
  /** Path and query, exactly as sent (Express's `req.originalUrl`). */
  resource: string;
  /** The Host header's host and port (the port defaults from the scheme). */
  host: string;
  port: number;
  /**
   * Other hosts and ports the client may have signed for: the public URL of a server behind a
   * proxy (clients sign the URL they call, the proxy's; the request arrives at another).
   */
  alsoSignedFor?: readonly HawkEndpoint[];
  /** The Content-Type header, which a payload hash covers (without its parameters). */
  contentType?: string;
  /**
   * The body as the server read it (JSON bodies). A payload hash the client sent (`hash`) is
   * checked against it; none (a body not read, as Taskcluster leaves a body that is not JSON): the
   * empty payload.
   */
  payload?: Buffer;
}

/** A host and port a client signs for (the URL it calls). */
export interface HawkEndpoint {
  host: string;
  port: number;
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

/** A bewit: `id\exp\mac\ext`, base64url, in the `bewit` query parameter. */
export interface BewitAttributes {
  id: string;
  /** Unix time (seconds) after which the bewit is refused. */
  exp: string;
  mac: string;
  ext: string;
}

/**
 * Hawk accepts timestamps this far from the server's clock, either way: 15 minutes, as Taskcluster
 * (clients on laptops and VMs drift; Hawk's own default of 60 s refused them where Taskcluster did
 * not). Replays within the window are refused by the nonce store, whose keys live until the
 * timestamp leaves the window (see verifyHawk): at most 2 x 15 minutes, 15 for a client whose
 * clock agrees, so Redis holds one small key (~100 bytes) per Hawk request of the last ~15
 * minutes, e.g. ~10 MB at 100 requests/s.
 */
export const HAWK_SKEW_SECONDS = 15 * 60;

/** Parses `Hawk id="..", ts="..", ...`; undefined if the header is not a Hawk header. */
export function parseHawkHeader(header: string): HawkAttributes | undefined {
  const m = /^Hawk\s+(.*)$/i.exec(header.trim());
  if (!m) return undefined;
  const attrs: Record<string, string> = {};
  const rest = m[1].replace(/(\w+)="([^"\\]*)"\s*(?:,\s*|$)/g, (_all, key: string, value: string) => {
    if (!['id', 'ts', 'nonce', 'hash', 'ext', 'mac', 'app', 'dlg'].includes(key))
      throw new UnauthenticatedError(`Hawk: unknown attribute ${key}`);
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

/**
 * The MAC of Hawk 1 (`hawk.1.header` for requests, `hawk.1.bewit` for bewits, whose nonce is
 * empty and method GET), base64 HMAC-SHA256 of the normalized string.
 */
export function hawkMac(
  key: string,
  type: 'header' | 'bewit',
  a: { ts: string; nonce: string; hash?: string; ext?: string; app?: string; dlg?: string },
  req: Pick<HawkRequest, 'method' | 'resource' | 'host' | 'port'>,
): string {
  let normalized =
    `hawk.1.${type}\n${a.ts}\n${a.nonce}\n${req.method.toUpperCase()}\n${req.resource}\n${req.host.toLowerCase()}\n${req.port}\n` +
    `${a.hash ?? ''}\n${(a.ext ?? '').replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`;
  if (a.app) normalized += `${a.app}\n${a.dlg ?? ''}\n`;
  return createHmac('sha256', key).update(normalized).digest('base64');
}

/** Characters Node's legacy url.parse() percent-escapes in a URL (and `\`, which it turns into `/` before the query). */
const LEGACY_ESCAPED = /[ "'<>^`{|}]/g;

/**
 * The request targets a client may have signed for the target `resource` it sent: that target, and
 * the target as Node's legacy url.parse() has it. The `hawk` client (taskcluster-client's, and the
 * Node clients built on it) signs `url.parse(url).pathname + search`, which escapes `'` (and
 * `"<>^\`{|}` and space) while the HTTP layer (got, WHATWG URL) sends them as they are:
 * taskcluster-client encodes names with encodeURIComponent, which leaves `'` alone, so a name with
 * `'` arrives as `'` but was signed as `%27`. Other clients sign what they send.
 */
export function signedTargets(resource: string): string[] {
  const q = resource.indexOf('?');
  const path = q < 0 ? resource : resource.slice(0, q);
  const query = q < 0 ? '' : resource.slice(q);
  const escape = (s: string) => s.replace(LEGACY_ESCAPED, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const legacy = escape(path.replace(/\\/g, '/')) + escape(query).replace(/\\/g, '%5C');
  return legacy === resource ? [resource] : [resource, legacy];
}

/** Whether `mac` is the MAC of the request for any URL the client may have signed (see signedTargets, alsoSignedFor). */
function macMatches(
  mac: string,
  compute: (req: Pick<HawkRequest, 'method' | 'resource' | 'host' | 'port'>) => string,
  req: HawkRequest,
): boolean {
  const given = Buffer.from(mac);
  const endpoints = [req, ...(req.alsoSignedFor ?? []).map((also) => ({ ...req, ...also }))];
  return endpoints.some((endpoint) =>
    signedTargets(endpoint.resource).some((resource) => {
      const expected = Buffer.from(compute({ ...endpoint, resource }));
      return expected.length === given.length && timingSafeEqual(expected, given);
    }),
  );
}

/**
 * Hawk's payload hash (sha256): base64 of sha256 over `hawk.1.payload\n`, the content type
 * (lowercased, without parameters), `\n`, the body and `\n`; what a client sends as `hash`.
 */
export function hawkPayloadHash(payload: Buffer | string, contentType: string | undefined): string {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return createHash('sha256').update(`hawk.1.payload\n${type}\n`).update(payload).update('\n').digest('base64');
}

/**
 * Verifies a Hawk (sha256) request against a client's key: the MAC over method, resource, host,
 * port, timestamp, nonce (and payload hash and ext when sent), the payload hash (when sent)
 * against the body, as Taskcluster checks it, the timestamp within HAWK_SKEW_SECONDS of now, and
 * the nonce never seen before for this client and timestamp (it is remembered for as long as the
 * timestamp stays acceptable).
 * Throws UnauthenticatedError (401) saying what failed.
 */
export async function verifyHawk(
  attrs: HawkAttributes,
  key: string,
  req: HawkRequest,
  nonces: NonceStore,
  nowMs = Date.now(),
): Promise<void> {
  if (!macMatches(attrs.mac, (r) => hawkMac(key, 'header', attrs, r), req)) {
    throw new UnauthenticatedError('Hawk: bad mac (wrong credentials, or the request was altered)');
  }
  // the MAC covers the hash the client sent, not the body: the hash must be the body's (an empty one is none, as for Taskcluster)
  if (attrs.hash) {
    const computed = hawkPayloadHash(req.payload ?? '', req.contentType);
    const given = Buffer.from(attrs.hash);
    const expected = Buffer.from(computed);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new UnauthenticatedError(
        `Hawk: invalid payload hash ${attrs.hash}, computed ${computed} (the body or its content type is not what was signed)`,
      );
    }
  }
  const ts = /^\d{1,12}$/.test(attrs.ts) ? Number(attrs.ts) : NaN;
  if (!Number.isFinite(ts) || Math.abs(ts - nowMs / 1000) > HAWK_SKEW_SECONDS) {
    throw new UnauthenticatedError(
      `Hawk: stale timestamp (server time ${Math.floor(nowMs / 1000)}, ${HAWK_SKEW_SECONDS} s of skew allowed); check the client's clock`,
    );
  }
  // acceptable until ts + skew: remembered until then (and a second more, for rounding)
  const ttlSeconds = Math.max(1, Math.ceil(ts + HAWK_SKEW_SECONDS - nowMs / 1000) + 1);
  if (!(await nonces.claim(`${attrs.id}\n${attrs.ts}\n${attrs.nonce}`, ttlSeconds))) {
    throw new UnauthenticatedError('Hawk: nonce already used (replayed request)');
  }
}

/**
 * Takes the bewit out of a request target: the bewit (still encoded) and the target without its
 * `bewit` parameter, which is what the bewit signs (Hawk's `hawk.1.bewit`); undefined without one.
 */
export function splitBewit(resource: string): { bewit: string; resource: string } | undefined {
  const q = resource.indexOf('?');
  if (q < 0) return undefined;
  const params = resource.slice(q + 1).split('&');
  const at = params.findIndex((p) => p.startsWith('bewit='));
  if (at < 0) return undefined;
  const rest = params.filter((_, i) => i !== at);
  if (rest.some((p) => p.startsWith('bewit='))) throw new UnauthenticatedError('bewit: more than one bewit parameter');
  return { bewit: params[at].slice('bewit='.length), resource: resource.slice(0, q) + (rest.length > 0 ? `?${rest.join('&')}` : '') };
}

/** Decodes a bewit (`base64url(id\exp\mac\ext)`). UnauthenticatedError if it is malformed. */
export function parseBewit(encoded: string): BewitAttributes {
  if (encoded === '') throw new UnauthenticatedError('bewit: empty');
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) throw new UnauthenticatedError('bewit: not base64url');
  const parts = Buffer.from(encoded, 'base64url').toString('utf8').split('\\');
  if (parts.length !== 4) throw new UnauthenticatedError('bewit: malformed (expected id\\exp\\mac\\ext)');
  const [id, exp, mac, ext] = parts;
  if (!id || !/^\d{1,12}$/.test(exp) || !mac) throw new UnauthenticatedError('bewit: malformed (missing id, exp or mac)');
  return { id, exp, mac, ext };
}

/**
 * Verifies a bewit against a client's key: GET (or HEAD) only, its MAC over the request target
 * without the bewit parameter, host and port, and its expiry (no skew: the client set it, from its
 * own clock, when it signed; Hawk and Taskcluster allow none either). A bewit is a link: it can be
 * used any number of times until it expires, so it has no nonce.
 */
export function verifyBewit(bewit: BewitAttributes, key: string, req: HawkRequest, nowMs = Date.now()): void {
  if (req.method !== 'GET' && req.method !== 'HEAD')
    throw new UnauthenticatedError('bewit: only GET and HEAD requests can be signed with a bewit');
  const attrs = { ts: bewit.exp, nonce: '', ext: bewit.ext };
  if (!macMatches(bewit.mac, (r) => hawkMac(key, 'bewit', attrs, { ...r, method: 'GET' }), req)) {
    throw new UnauthenticatedError('bewit: bad mac (wrong credentials, or the URL was altered)');
  }
  if (Number(bewit.exp) * 1000 <= nowMs) {
    throw new UnauthenticatedError(
      `bewit: expired at ${new Date(Number(bewit.exp) * 1000).toISOString()} (server time ${new Date(nowMs).toISOString()})`,
    );
  }
}
