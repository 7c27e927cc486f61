import type { Request, Response } from 'express';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OutOfRangeError } from '@ferry/errors';

/** A byte range `[start, end)` of a resource. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header against a resource of `size` bytes (RFC 9110 section 14). Returns
 * undefined when the whole resource should be sent (no header, another unit, or several ranges,
 * which a server may ignore); throws OutOfRangeError (416) when the single range is unsatisfiable.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first, last] = m;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) throw new OutOfRangeError(`range ${header} is not satisfiable: the resource has ${size} bytes`);
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(first);
  const end = last === '' ? size : Math.min(size, Number(last) + 1);
  if (start >= size || (last !== '' && Number(last) < start)) {
    throw new OutOfRangeError(`range ${header} is not satisfiable: the resource has ${size} bytes`);
  }
  return { start, end };
}

/** A download's representation: what the ranged edge needs for its headers and body. */
export interface RangedContent {
  /** Its length in bytes. */
  size: number;
  /** Strong entity tag, quoted: the validator that If-None-Match and If-Range are compared with. */
  etag: string;
  contentType: string;
  /** When given, the content is sent as an attachment of this name. */
  fileName?: string;
  /** md5 (hex) of the whole content, sent as Content-MD5 with a 200 only (it is not the digest of a part). */
  md5Hex?: string;
  /** Cache-Control of the 200, 206 and 304 answers. */
  cacheControl?: string;
  /** Streams `[start, end)`; not called for HEAD, 304 or an empty body. */
  read(start: number, end: number): Readable;
}

/**
 * Answers a GET or HEAD of `content` by RFC 9110: 304 when If-None-Match names its entity tag, 206
 * for a satisfiable single Range (ignored when If-Range names another validator), else 200 with the
 * whole. An unsatisfiable Range throws OutOfRangeError, for the app's error filter to answer 416 in
 * its own body shape, with the Content-Range that gives the size already set.
 */
export async function sendRange(req: Request, res: Response, content: RangedContent): Promise<void> {
  const { size, etag } = content;
  if (noneMatch(req.header('if-none-match'), etag)) {
    res.status(304);
    res.setHeader('ETag', etag);
    if (content.cacheControl) res.setHeader('Cache-Control', content.cacheControl);
    res.end();
    return;
  }
  const header = req.header('range');
  let range: ByteRange | undefined;
  try {
    range = header !== undefined && ifRangeHolds(req.header('if-range'), etag) ? parseRange(header, size) : undefined;
  } catch (err) {
    // the size lets a client ask again for what there is
    res.setHeader('Content-Range', `bytes */${size}`);
    throw err;
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? size;
  // a HEAD (Express routes it to GET handlers) has no body to read
  const body = req.method === 'HEAD' || end === start ? undefined : content.read(start, end);
  if (body) {
    // a read that fails before its first byte (the blob gone, storage down) is still answered as
    // an error, by the app's error filter: nothing has been sent yet
    try {
      await once(body, 'readable');
    } catch (err) {
      body.destroy();
      throw err;
    }
  }
  res.status(range ? 206 : 200);
  res.setHeader('Content-Type', content.contentType);
  res.setHeader('Content-Length', String(end - start));
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('ETag', etag);
  if (content.fileName !== undefined) {
    res.setHeader('Content-Disposition', `attachment; filename*=UTF-8''${encodeURIComponent(content.fileName)}`);
  }
  if (content.cacheControl) res.setHeader('Cache-Control', content.cacheControl);
  if (range) res.setHeader('Content-Range', `bytes ${start}-${end - 1}/${size}`);
  if (!range && content.md5Hex) res.setHeader('Content-MD5', Buffer.from(content.md5Hex, 'hex').toString('base64'));
  if (!body) {
    res.end();
    return;
  }
  // a client that goes away mid-download is not an error of ours; a read that fails later cuts
  // the connection (the status line is sent: a short body must not pass for the whole)
  await pipeline(body, res).catch(() => res.destroy());
}

/** The opaque part of an entity tag (`"x"` of `W/"x"`). */
const opaque = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);

/** If-None-Match by weak comparison (RFC 9110 section 13.1.2): `*` or a listed tag matches. */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const ours = opaque(etag);
  return (header.match(/(?:W\/)?"[^"]*"/g) ?? []).some((tag) => opaque(tag) === ours);
}

/**
 * If-Range by strong comparison (RFC 9110 section 13.1.5): absent, or our strong tag. A date never
 * holds, as there is no Last-Modified to compare it with: the whole content is sent then.
 */
function ifRangeHolds(header: string | undefined, etag: string): boolean {
  if (header === undefined) return true;
  return !etag.startsWith('W/') && header.trim() === etag;
}
