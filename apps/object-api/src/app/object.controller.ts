import { Controller, Get, HttpCode, Inject, Injectable, Param, PipeTransform, Post, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Authenticator, HawkEndpoint } from '@ferry/auth';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG } from '@ferry/core';
import { publicBaseUrl } from '@ferry/http';
import { ObjectService, assertObjectName } from '@ferry/objects';
import { RedisNonceStore } from '@ferry/redis';
import { hawkEndpointOf, principalOf } from './principal';

const started = Date.now();

/** The `name` path parameter, checked before the caller is authenticated, as Taskcluster checks its URL parameters (400 InvalidRequestArguments). */
@Injectable()
class ObjectName implements PipeTransform<string, string> {
  transform(name: string): string {
    assertObjectName(name);
    return name;
  }
}

/** The Taskcluster object API, `/api/object/v1` (docs/protocols.md, Taskcluster object service). */
@Controller('api/object/v1')
export class ObjectController {
  private readonly publicEndpoint: HawkEndpoint | undefined;

  constructor(
    private readonly objects: ObjectService,
    private readonly auth: Authenticator,
    private readonly nonces: RedisNonceStore,
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
  ) {
    this.publicEndpoint = hawkEndpointOf(config.objects.publicUrl); // parsed once, not per request
  }

  @Get('ping')
  ping(): { alive: true; uptime: number } {
    return { alive: true, uptime: (Date.now() - started) / 1000 };
  }

  @Put('upload/:name')
  async createUpload(@Req() req: Request, @Param('name', ObjectName) name: string) {
    const principal = await this.principal(req);
    return this.objects.createUpload(principal, name, req.body, this.base(req));
  }

  @Post('finish-upload/:name')
  @HttpCode(200)
  async finishUpload(@Req() req: Request, @Param('name', ObjectName) name: string) {
    return this.objects.finishUpload(await this.principal(req), name, req.body);
  }

  @Put('start-download/:name')
  async startDownload(@Req() req: Request, @Param('name', ObjectName) name: string) {
    return this.objects.startDownload(await this.principal(req), name, req.body, this.base(req));
  }

  @Get('metadata/:name')
  async metadata(@Req() req: Request, @Param('name', ObjectName) name: string) {
    return this.objects.metadata(await this.principal(req), name);
  }

  @Get('download/:name')
  async download(@Req() req: Request, @Res() res: Response, @Param('name', ObjectName) name: string): Promise<void> {
    const url = await this.objects.downloadUrl(await this.principal(req), name, this.base(req));
    res.redirect(303, url);
  }

  private principal(req: Request) {
    return principalOf(this.auth, this.nonces, req, this.publicEndpoint);
  }

  private base(req: Request): string {
    return publicBaseUrl(req, this.config.objects.publicUrl);
  }
}
