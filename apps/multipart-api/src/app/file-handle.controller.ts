import { Controller, Get, Inject, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Authenticator } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG } from '@ferry/core';
import { publicBaseUrl, sendRange, signedRequestOf } from '@ferry/http';
import { FileHandle, MultipartService, parseBooleanFlag } from '@ferry/multipart';
import { principalOf } from './principal';

/**
 * File handles at `{base}/fileHandle/{id}` for both file endpoint bases (the root and Synapse's
 * `/file/v1`), and at `/file/fileHandle/{id}` as Ferry served them first.
 */
@Controller(['fileHandle', 'file/v1/fileHandle', 'file/fileHandle'])
export class FileHandleController {
  constructor(
    private readonly multipart: MultipartService,
    private readonly auth: Authenticator,
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
  ) {}

  @Get(':id')
  get(@Req() req: Request, @Param('id') id: string): Promise<FileHandle> {
    return this.multipart.fileHandle(principalOf(this.auth, req), id);
  }

  /** A signed download URL: as text with redirect=false, else a 307 to it. */
  @Get(':id/url')
  async url(@Req() req: Request, @Res() res: Response, @Param('id') id: string, @Query('redirect') redirect: unknown): Promise<void> {
    const follow = parseBooleanFlag(redirect, 'redirect', true);
    const url = await this.multipart.fileHandleUrl(principalOf(this.auth, req), id, publicBaseUrl(req, this.config.multipart.publicUrl));
    if (follow) res.redirect(307, url);
    else res.type('text/plain').send(url);
  }

  /** Data plane: the content behind a signed download URL, with Range support. */
  @Get(':id/content')
  async content(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    const { handle, object, read } = await this.multipart.openContent(id, signedRequestOf(req));
    await sendRange(req, res, {
      size: object.size,
      etag: `"${handle.etag}"`,
      contentType: handle.contentType,
      fileName: handle.fileName,
      md5Hex: handle.contentMd5,
      read,
    });
  }
}
