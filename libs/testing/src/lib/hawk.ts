// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- hawk ships no types; the declaration must travel with this module to every project that imports it
/// <reference path="../types/hawk.d.ts" />
import * as hawk from 'hawk';

/** An Authorization header signed by the hawk library, exactly as Taskcluster clients sign requests. */
export function hawkHeader(
  url: string,
  method: string,
  id: string,
  key: string,
  options: { ext?: string; timestamp?: number } = {},
): string {
  return hawk.client.header(url, method, { credentials: { id, key, algorithm: 'sha256' }, ...options }).header;
}

/**
 * A bewit for a GET of `url`, made by the hawk library as Taskcluster clients make them
 * (`buildSignedUrl`); `clockOffsetMs` moves the signer's clock (a negative one makes a bewit that
 * expired `ttlSec` after that moment).
 */
export function hawkBewit(url: string, id: string, key: string, options: { ttlSec: number; ext?: string; clockOffsetMs?: number }): string {
  return hawk.client.getBewit(url, {
    credentials: { id, key, algorithm: 'sha256' },
    ttlSec: options.ttlSec,
    ext: options.ext,
    localtimeOffsetMsec: options.clockOffsetMs,
  });
}
