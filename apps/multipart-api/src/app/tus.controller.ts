import { Controller, Delete, Head, Inject, Options, Param, Patch, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Authenticator } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, LOGGER, classifyInfraError } from '@ferry/core';
import { publicBaseUrl, toEdgeError } from '@ferry/http';
import type { Logger } from '@ferry/logging';
import { TUS_VERSION, type TusReply, type TusRequest, TusService, TusVersionError, checkTusResumable, tusHttpStatus } from '@ferry/tus';
import { principalOf } from './principal';

/** A PATCH that sends nothing for this long is cut (what arrived is kept, its lease released). */
const PATCH_IDLE_MS = 60_000;

/** tus 1.0.0 under `/files/` (libs/tus holds the protocol; this is the HTTP edge). */
@Controller('files')
export class TusController {
  constructor(
    private readonly tus: TusService,
    private readonly auth: Authenticator,
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  @Options(['', ':id'])
  options(@Res() res: Response): void {
    this.send(res, { status: 204, headers: this.tus.capabilities() });
  }

  @Post('')
  async create(@Req() req: Request, @Res() res: Response): Promise<void> {
    await this.answer(req, res, () => {
      const base = `${publicBaseUrl(req, this.config.multipart.publicUrl)}/files`;
      // a final upload (concatenation) has no body to wait for, and its POST copies its partial
      // uploads, however long that takes: no idle cut
      const final = req.header('upload-concat')?.trim().startsWith('final;') ?? false;
      return this.tus.create(principalOf(this.auth, req), this.request(req, !final), base);
    });
  }

  @Head(':id')
  async head(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    await this.answer(req, res, () => this.tus.head(principalOf(this.auth, req), id));
  }

  @Patch(':id')
  async patch(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    await this.answer(req, res, () => this.tus.patch(principalOf(this.auth, req), id, this.request(req)));
  }

  @Delete(':id')
  async terminate(@Req() req: Request, @Res() res: Response, @Param('id') id: string): Promise<void> {
    await this.answer(req, res, () => this.tus.terminate(principalOf(this.auth, req), id));
  }

  private request(req: Request, idleCut = true): TusRequest {
    if (idleCut) req.setTimeout(PATCH_IDLE_MS, () => req.destroy(new Error('aborted')));
    return { header: (name) => req.header(name), body: req };
  }

  private async answer(req: Request, res: Response, run: () => Promise<TusReply>): Promise<void> {
    try {
      checkTusResumable(req.header('tus-resumable'));
      this.send(res, await run());
    } catch (err) {
      this.fail(req, res, err);
    }
  }

  private send(res: Response, reply: TusReply): void {
    res
      .status(reply.status)
      .set({ 'Tus-Resumable': TUS_VERSION, ...reply.headers })
      .end();
  }

  /** A typed error as tus's status (412, 409, 410, 413, 415, 460) or Ferry's table, with a JSON `{code, message}` body (none for HEAD). */
  private fail(req: Request, res: Response, err: unknown): void {
    const edge = toEdgeError(err, classifyInfraError);
    if (!edge.expected) this.logger.error({ err }, 'tus: unexpected error');
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const status = tusHttpStatus(err) ?? edge.status;
    res.status(status).set({ 'Tus-Resumable': TUS_VERSION, ...(err instanceof TusVersionError ? { 'Tus-Version': TUS_VERSION } : {}) });
    if (req.method === 'HEAD') res.end();
    else res.json({ code: edge.code, message: edge.message });
  }
}
