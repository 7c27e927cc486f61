import { Controller, Get, Param, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { sendRange, signedRequestOf } from '@ferry/http';
import { ObjectDataPaths, ObjectService } from '@ferry/objects';

/** The data plane of signed putUrl / getUrl URLs (local-disk storage). */
@Controller('data')
export class DataController {
  constructor(private readonly objects: ObjectService) {}

  @Put('uploads/:uploadId/:name')
  async put(@Req() req: Request, @Res() res: Response, @Param('uploadId') uploadId: string, @Param('name') name: string): Promise<void> {
    req.setTimeout(60_000, () => req.destroy(new Error('aborted')));
    try {
      await this.objects.putData(uploadId, ObjectDataPaths.nameOf(name), signedRequestOf(req), req);
    } catch (err) {
      // refused before the whole body arrived: close the connection after the answer, rather
      // than keep it open while the rest of the body drains
      if (!req.complete) res.setHeader('Connection', 'close');
      throw err;
    }
    res.status(200).end();
  }

  @Get('objects/:name')
  async get(@Req() req: Request, @Res() res: Response, @Param('name') name: string): Promise<void> {
    const { object, read } = await this.objects.openData(ObjectDataPaths.nameOf(name), signedRequestOf(req));
    await sendRange(req, res, {
      size: object.size,
      etag: `"${object.sha256}"`,
      contentType: object.contentType || 'application/binary',
      read,
    });
  }
}
