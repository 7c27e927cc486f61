import { Controller, Get, Param, Res } from '@nestjs/common';
import type { Response } from 'express';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { NotFoundError } from '@ferry/errors';

/** The page's static files: built beside main.js (dist) or in the sources (ts-jest). */
export function uploadAssetsDir(): string {
  const candidates = [join(__dirname, 'assets', 'upload'), join(__dirname, '..', 'assets', 'upload')];
  const found = candidates.find((dir) => existsSync(join(dir, 'index.html')));
  if (!found) throw new Error(`the upload page's files are missing: looked in ${candidates.join(', ')}`);
  return found;
}

/** What the page loads; nothing else is served from the directory. */
const FILES: Record<string, { type: string; path: () => string }> = {
  'upload.js': { type: 'text/javascript; charset=utf-8', path: () => join(uploadAssetsDir(), 'upload.js') },
  'upload.css': { type: 'text/css; charset=utf-8', path: () => join(uploadAssetsDir(), 'upload.css') },
  // tus-js-client's browser build, from the package (no CDN: the page works offline); createRequire,
  // not require.resolve, which webpack rewrites into a module id
  'tus.min.js': {
    type: 'text/javascript; charset=utf-8',
    path: () => createRequire(__filename).resolve('tus-js-client/dist/tus.min.js'),
  },
};

/** Scripts and styles from this origin only, requests to it only (tus, the download URL); no framing. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The browser upload page at `/upload` (tus-js-client against `/files/`), and its files at
 * `/upload/{file}`. The files are read once, at the first request for each.
 */
@Controller('upload')
export class UploadPageController {
  private readonly cache = new Map<string, Buffer>();

  @Get()
  page(@Res() res: Response): void {
    res
      .status(200)
      .set({
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
        'Cache-Control': 'no-cache',
      })
      .send(this.read('index.html', () => join(uploadAssetsDir(), 'index.html')));
  }

  @Get(':file')
  file(@Res() res: Response, @Param('file') name: string): void {
    const file = Object.hasOwn(FILES, name) ? FILES[name] : undefined;
    if (!file) throw new NotFoundError(`no file ${JSON.stringify(name)} in the upload page`);
    res
      .status(200)
      .set({ 'Content-Type': file.type, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache' })
      .send(this.read(name, file.path));
  }

  private read(name: string, path: () => string): Buffer {
    let bytes = this.cache.get(name);
    if (!bytes) {
      bytes = readFileSync(path());
      this.cache.set(name, bytes);
    }
    return bytes;
  }
}
