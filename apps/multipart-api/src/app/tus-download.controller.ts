import { Controller, Get, Inject, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { Authenticator, SIGNED_URL_PARAMS } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG } from '@ferry/core';
import { parseRange, publicBaseUrl, signedRequestOf } from '@ferry/http';
import { parseBooleanFlag } from '@ferry/multipart';
import { type TusDownload, TusDownloads } from '@ferry/tus';
import { principalOf } from './principal';

/**
 * Downloads of finished tus uploads (tusd's GET /files/{id}), by bearer or by a signed URL, and
 * signed download URLs for them, as file handles have. HEAD, PATCH, DELETE and OPTIONS of
 * `/files/{id}` stay tus's (TusController, registered first). Errors are `{code, message}` JSON
 * from the global filter.
 */
@Controller('files')
export class TusDownloadController {
  constructor(
    private readonly downloads: TusDownloads,
    private readonly auth: Authenticator,
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
  ) {}

  /** A signed download URL: as text with redirect=false, else a 307 to it. */
  @Get(':id/url')
  async url(@Req() req: Request, @Res() res: Response, @Param('id') id: string, @Query('redirect') redirect: unknown): Promise<void> {
    const follow = parseBooleanFlag(redirect, 'redirect', true);
    const url = await this.downloads.url(principalOf(this.auth, req), id, publicBaseUrl(req, this.config.multipart.publicUrl));
    res.setHeader('Cache-Control', 'no-store');
    if (follow) res.redirect(307, url);
    else res.type('text/plain').send(url);
  }

  /** The finished upload's bytes, with Range support: a signed URL (its query) or a bearer token. */
  @Get(':id')
  async content(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    const download = isSigned(req)
      ? await this.downloads.openSigned(id, signedRequestOf(req))
      : await this.downloads.open(principalOf(this.auth, req), id);
    await send(req, res, download);
  }
}

/** A request carrying signed-URL parameters (it is then judged by them only). */
function isSigned(req: Request): boolean {
  return Object.values(SIGNED_URL_PARAMS).some((p) => req.query[p] !== undefined);
}

async function send(req: Request, res: Response, download: TusDownload): Promise<void> {
  const { object } = download;
  const range = parseRange(req.header('range'), object.size);
  const start = range?.start ?? 0;
  const end = range?.end ?? object.size;
  res.status(range ? 206 : 200);
  res.setHeader('Content-Type', download.contentType);
  res.setHeader('Content-Length', String(end - start));
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('ETag', download.etag);
  res.setHeader('Content-Disposition', `attachment; filename*=UTF-8''${encodeURIComponent(download.fileName)}`);
  res.setHeader('Cache-Control', 'private, no-cache');
  if (range) res.setHeader('Content-Range', `bytes ${start}-${end - 1}/${object.size}`);
  if (!range && object.md5) res.setHeader('Content-MD5', Buffer.from(object.md5, 'hex').toString('base64'));
  if (end === start) {
    res.end();
    return;
  }
  // a client that goes away mid-download is not an error of ours
  await pipeline(download.read(start, end), res).catch(() => res.destroy());
}
