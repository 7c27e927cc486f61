import { Controller, Get, Param, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { parseRange, signedRequestOf } from '@ferry/http';
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
    const range = parseRange(req.header('range'), object.size);
    const start = range?.start ?? 0;
    const end = range?.end ?? object.size;
    res.status(range ? 206 : 200);
    res.setHeader('Content-Type', object.contentType || 'application/binary');
    res.setHeader('Content-Length', String(end - start));
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('ETag', `"${object.sha256}"`);
    if (range) res.setHeader('Content-Range', `bytes ${start}-${end - 1}/${object.size}`);
    // a client that goes away mid-download is not an error of ours
    await pipeline(read(start, end), res).catch(() => res.destroy());
  }
}
