import { Controller, Get, Inject, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Authenticator, SIGNED_URL_PARAMS } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG } from '@ferry/core';
import { publicBaseUrl, sendRange, signedRequestOf } from '@ferry/http';
import { parseBooleanFlag } from '@ferry/multipart';
import { TusDownloads } from '@ferry/tus';
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
    await sendRange(req, res, {
      size: download.object.size,
      etag: download.etag,
      contentType: download.contentType,
      fileName: download.fileName,
      md5Hex: download.object.md5,
      // per-client content: no shared cache keeps it, a browser's copy is revalidated by ETag
      cacheControl: 'private, no-cache',
      read: download.read,
    });
  }
}

/** A request carrying signed-URL parameters (it is then judged by them only). */
function isSigned(req: Request): boolean {
  return Object.values(SIGNED_URL_PARAMS).some((p) => req.query[p] !== undefined);
}
