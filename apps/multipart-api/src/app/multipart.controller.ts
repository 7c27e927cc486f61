import { Controller, Get, HttpCode, Inject, Param, Post, Put, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Authenticator } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG } from '@ferry/core';
import { InvalidArgumentError } from '@ferry/errors';
import { publicBaseUrl, signedRequestOf } from '@ferry/http';
import { AddPartResponse, MultipartService, MultipartUploadStatus, parseBooleanFlag } from '@ferry/multipart';
import { partBytes, partsStored } from './metrics';
import { principalOf } from './principal';

/** A part PUT that sends nothing for this long is cut (its lease then lapses). */
const PART_IDLE_MS = 60_000;

/**
 * Synapse's multipart routes, under both file endpoint bases a Synapse client may be given: the
 * root (`{base}/file/multipart...` with base `http://host:8081`) and Synapse's own `/file/v1`.
 */
@Controller(['file/multipart', 'file/v1/file/multipart'])
export class MultipartController {
  constructor(
    private readonly multipart: MultipartService,
    private readonly auth: Authenticator,
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
  ) {}

  @Post(['', 'upload'])
  @HttpCode(201)
  start(@Req() req: Request, @Query('forceRestart') forceRestart: unknown): Promise<MultipartUploadStatus> {
    const principal = principalOf(this.auth, req);
    return this.multipart.start(principal, req.body, parseBooleanFlag(forceRestart, 'forceRestart', false));
  }

  @Get(':uploadId')
  status(@Req() req: Request, @Param('uploadId') uploadId: string): Promise<MultipartUploadStatus> {
    return this.multipart.status(principalOf(this.auth, req), uploadId);
  }

  @Post([':uploadId/presigned/url/batch', ':uploadId/presignedurl/batch'])
  @HttpCode(201)
  presignedUrls(@Req() req: Request, @Param('uploadId') uploadId: string) {
    const base = publicBaseUrl(req, this.config.multipart.publicUrl);
    return this.multipart.presignedUrls(principalOf(this.auth, req), uploadId, req.body, base);
  }

  @Put(':uploadId/add/:partNumber')
  addPart(
    @Req() req: Request,
    @Param('uploadId') uploadId: string,
    @Param('partNumber') partNumber: string,
    @Query('partMD5Hex') partMD5Hex: unknown,
  ): Promise<AddPartResponse> {
    return this.multipart.addPart(principalOf(this.auth, req), uploadId, partNumber, partMD5Hex);
  }

  @Put(':uploadId/complete')
  async complete(@Req() req: Request, @Res() res: Response, @Param('uploadId') uploadId: string): Promise<void> {
    const principal = principalOf(this.auth, req);
    const gone = new AbortController();
    res.on('close', () => gone.abort());
    const { status, done } = await this.multipart.complete(principal, uploadId, gone.signal);
    if (!done) res.setHeader('Retry-After', '5');
    res.status(done ? 200 : 202).json(status);
  }

  /** Data plane: the target of presigned part URLs (authorised by the signature, not a token). */
  @Put(':uploadId/parts/:partNumber')
  async putPart(
    @Req() req: Request,
    @Res() res: Response,
    @Param('uploadId') uploadId: string,
    @Param('partNumber') partNumber: string,
  ): Promise<void> {
    req.setTimeout(PART_IDLE_MS, () => req.destroy(new Error('aborted')));
    const length = req.headers['content-length'];
    if (length !== undefined && !/^\d+$/.test(length)) throw new InvalidArgumentError('Content-Length must be a number');
    const { md5, size } = await this.multipart.putPart(
      uploadId,
      partNumber,
      signedRequestOf(req),
      req,
      length === undefined ? undefined : Number(length),
    );
    partBytes.inc(size);
    partsStored.inc();
    res.status(200).setHeader('ETag', `"${md5}"`).end();
  }
}
