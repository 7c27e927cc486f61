import { createHmac, timingSafeEqual } from 'node:crypto';
import { PermissionDeniedError } from '@ferry/errors';

/** Query parameters of a signed URL. */
export const SIGNED_URL_PARAMS = {
  expires: 'X-Ferry-Expires',
  signedHeaders: 'X-Ferry-SignedHeaders',
  signature: 'X-Ferry-Signature',
} as const;

export interface SignedUrlParts {
  /** HTTP method the URL is good for. */
  method: string;
  /** Path (no query), exactly as the client will send it. */
  path: string;
  /** Unix time (seconds) after which the URL is refused. */
  expiresAt: number;
  /** Headers the client must send with exactly these values (names case-insensitive). */
  headers?: Record<string, string>;
}

/** What a request to a signed URL carries, as the transport sees it. */
export interface SignedRequest {
  method: string;
  /** Path without the query, exactly as received. */
  path: string;
  query: Record<string, unknown>;
  header(name: string): string | undefined;
}

/**
 * HMAC-SHA256 signed URLs: nothing is stored; the signature covers the method, the path (which
 * names the upload and part, or the object), the expiry and the signed headers. Any replica holding
 * the same key verifies what another issued.
 */
export class UrlSigner {
  constructor(private readonly key: string) {
    if (key.length < 32) throw new TypeError('signing key must be at least 32 characters');
  }

  /** The query string (without `?`) that makes `parts.path` a signed URL. */
  sign(parts: SignedUrlParts): string {
    const names = headerNames(parts.headers ?? {});
    const q = new URLSearchParams({
      [SIGNED_URL_PARAMS.expires]: String(parts.expiresAt),
      [SIGNED_URL_PARAMS.signedHeaders]: names.join(';'),
      [SIGNED_URL_PARAMS.signature]: this.mac(parts.method, parts.path, parts.expiresAt, names, (n) => lower(parts.headers ?? {})[n]),
    });
    return q.toString();
  }

  /**
   * Checks a request against its signature. Throws PermissionDeniedError (403) saying whether the
   * URL expired or was tampered with (path, expiry, signed headers or signature changed).
   */
  verify(
    method: string,
    path: string,
    query: Record<string, unknown>,
    header: (name: string) => string | undefined,
    nowMs = Date.now(),
  ): void {
    const expires = single(query[SIGNED_URL_PARAMS.expires]);
    const signedHeaders = single(query[SIGNED_URL_PARAMS.signedHeaders]);
    const signature = single(query[SIGNED_URL_PARAMS.signature]);
    if (expires === undefined || signedHeaders === undefined || signature === undefined) {
      throw new PermissionDeniedError(
        `not a signed URL: ${SIGNED_URL_PARAMS.expires}, ${SIGNED_URL_PARAMS.signedHeaders} and ${SIGNED_URL_PARAMS.signature} are required`,
      );
    }
    const expiresAt = /^\d{1,12}$/.test(expires) ? Number(expires) : NaN;
    const names = signedHeaders === '' ? [] : signedHeaders.split(';');
    // sign() lists lower-case header names only: anything else (an empty name, a space) was tampered
    // with, and is not looked up (Express's req.header('') throws: a 500 found by npm run fuzz)
    const wellFormed = names.every((n) => HEADER_NAME.test(n));
    const expected =
      Number.isFinite(expiresAt) && wellFormed ? this.mac(method, path, expiresAt, names, (n) => headerValue(header(n))) : '';
    const given = Buffer.from(signature);
    const want = Buffer.from(expected);
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw new PermissionDeniedError(
        'signature does not match: the URL, its expiry or a signed header was changed, or a signed header is missing; ask for a new URL',
      );
    }
    if (expiresAt * 1000 <= nowMs) {
      throw new PermissionDeniedError(`signed URL expired at ${new Date(expiresAt * 1000).toISOString()}; ask for a new URL`);
    }
  }

  /** verify() for a whole request. */
  verifyRequest(req: SignedRequest, nowMs = Date.now()): void {
    this.verify(req.method, req.path, req.query, (name) => req.header(name), nowMs);
  }

  private mac(method: string, path: string, expiresAt: number, names: string[], value: (name: string) => string | undefined): string {
    const lines = ['FERRY-HMAC-SHA256', method.toUpperCase(), path, String(expiresAt), names.join(';')];
    for (const n of names) lines.push(`${n}:${(value(n) ?? '').trim()}`);
    return createHmac('sha256', this.key).update(lines.join('\n')).digest('base64url');
  }
}

function lower(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

function headerNames(headers: Record<string, string>): string[] {
  return Object.keys(headers)
    .map((k) => k.toLowerCase())
    .sort();
}

/** A lower-case HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** A header's value as one string (Node gives a few, such as set-cookie, as an array). */
function headerValue(v: unknown): string | undefined {
  if (Array.isArray(v)) return v.join(', ');
  return typeof v === 'string' ? v : undefined;
}

function single(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
