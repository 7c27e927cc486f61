import { createReadStream } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Endpoints, Options } from './args';
import { AuthError, InterruptedError, LocalFileError, NotFoundError, RefusedError, TransientError } from './errors';
import { ByteStreamProtocol } from './bytestream';
import { StateStore, inProgress } from './state';
import type { DownloadResult, LocalFile, ProtocolClient, RemoteStatus, TransferContext, UploadResult } from './transfer';
import { connectionError, pacer, withRetries } from './transfer';
import { verifyAgainstCatalog } from './verify';

/** Bytes per PATCH: a failed PATCH costs at most this much again. */
const CHUNK_BYTES = 8 * 1024 * 1024;
const TUS = { 'tus-resumable': '1.0.0' };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** An upload that the server no longer knows (expired, or never was). */
class GoneError extends NotFoundError {}

/**
 * tus 1.0 on multipart-api (`/files/`): creation with Upload-Length and the name as `filename`
 * metadata, PATCHes of 8 MiB at the server's offset, HEAD for where to resume. The upload URL is
 * kept in the local state file, so that the next run of the same command continues it. The object
 * is published as `tus/<id>`; downloads read it over ByteStream (one catalog).
 */
export class TusProtocol implements ProtocolClient {
  private readonly states: StateStore;
  private readonly reader: ByteStreamProtocol;

  constructor(
    private readonly endpoints: Endpoints,
    options: Options,
  ) {
    this.states = new StateStore(options.stateDir);
    this.reader = new ByteStreamProtocol(endpoints, options);
  }

  close(): void {
    this.reader.close();
  }

  private url(name: string): string {
    if (/^https?:\/\//.test(name)) return name;
    const id = name.replace(/^tus\//, '');
    return `${this.endpoints.multipartUrl}/files/${encodeURIComponent(id)}`;
  }

  /** `tus/<id>`, an upload URL, or the name (`filename`) of an upload in progress that the local state knows. */
  async status(name: string): Promise<RemoteStatus> {
    const local = /^(tus\/|https?:\/\/)/.test(name) ? undefined : this.states.latestFor('tus', name);
    if (local?.data['url']) {
      const url = local.data['url'];
      const at = await this.offset(url);
      const published = `tus/${url.split('/').pop()}`;
      if (at < local.size) return inProgress(name, at, local, { url, publishedAs: published });
      return { name: published, committed: at, complete: true, details: { url, length: local.size } };
    }
    const published = /^(tus\/|https?:\/\/)/.test(name) ? undefined : this.states.publishedAs('tus', name);
    if (published) return this.status(published);
    const a = await this.send('HEAD', this.url(name), {});
    if (a.status === 404 || a.status === 410) throw new NotFoundError(`tus: ${name}: not found (${a.status})`);
    this.check(a, [200]);
    const offset = Number(a.headers['upload-offset']);
    const length = a.headers['upload-length'] === undefined ? undefined : Number(a.headers['upload-length']);
    return {
      name: `tus/${this.url(name).split('/').pop()}`,
      committed: offset,
      complete: length !== undefined && offset === length,
      details: { url: this.url(name), ...(length !== undefined ? { length } : {}) },
    };
  }

  async upload(file: LocalFile, name: string, ctx: TransferContext): Promise<UploadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const state = this.states.load('tus', file, name);
    let url = state?.data['url'];
    let from = 0;
    if (url) {
      const known = url;
      try {
        from = await withRetries('status', () => this.offset(known), retry);
        if (from > 0) progress.note(`resuming at ${from} of ${file.size} bytes (tus upload ${known}, begun ${state?.startedAt})`);
      } catch (err) {
        if (!(err instanceof GoneError)) throw err;
        progress.note(`the previous upload (${known}) is gone on the server: starting again`);
        url = undefined;
      }
    }
    if (!url) {
      url = await withRetries('create', () => this.create(file, name), retry);
      this.states.save('tus', file, name, { url });
    }
    const uploadUrl = url;
    const objectName = `tus/${uploadUrl.split('/').pop()}`;
    progress.start(file.size, from);
    try {
      await withRetries(
        'upload',
        async () => {
          let offset = await this.offset(uploadUrl);
          while (offset < file.size) offset = await this.patch(uploadUrl, file, offset, ctx);
        },
        retry,
      );
    } catch (err) {
      if (err instanceof GoneError) this.states.remove('tus', file, name);
      throw err;
    } finally {
      progress.end();
    }
    await verifyAgainstCatalog(this.endpoints, objectName, file.path, progress, signal);
    this.states.published('tus', name, objectName);
    this.states.remove('tus', file, name);
    return { name: objectName, size: file.size, resumedAt: from, alreadyComplete: from === file.size };
  }

  download(name: string, file: string, ctx: TransferContext): Promise<DownloadResult> {
    return this.reader.download(name, file, ctx);
  }

  private async create(file: LocalFile, name: string): Promise<string> {
    const a = await this.send('POST', `${this.endpoints.multipartUrl}/files/`, {
      'upload-length': String(file.size),
      'upload-metadata': `filename ${Buffer.from(name).toString('base64')}`,
    });
    this.check(a, [201]);
    const location = a.headers['location'];
    if (typeof location !== 'string') throw new TransientError('tus: the creation answered no Location');
    return new URL(location, `${this.endpoints.multipartUrl}/files/`).href;
  }

  private async offset(url: string): Promise<number> {
    const a = await this.send('HEAD', url, {});
    if (a.status === 404 || a.status === 410) throw new GoneError(`tus: ${url} is gone (${a.status})`);
    this.check(a, [200]);
    return Number(a.headers['upload-offset']);
  }

  /** One PATCH of up to CHUNK_BYTES from `offset`; the server's new offset. */
  private patch(url: string, file: LocalFile, offset: number, ctx: TransferContext): Promise<number> {
    const { signal, progress } = ctx;
    const end = Math.min(file.size, offset + CHUNK_BYTES);
    const pace = pacer(ctx.options.rateLimit, signal);
    return new Promise<number>((resolve, reject) => {
      if (signal.aborted) return reject(new InterruptedError(`upload interrupted at byte ${offset} of ${file.size}`, offset));
      const req = this.request(url, 'PATCH', {
        ...this.headers(),
        'content-type': 'application/offset+octet-stream',
        'upload-offset': String(offset),
        'content-length': String(end - offset),
      });
      const stream = createReadStream(file.path, { start: offset, end: end - 1, highWaterMark: 256 * 1024 });
      let interrupted = false;
      const onAbort = () => {
        interrupted = true;
        stream.destroy();
        req.destroy();
        // what the server made durable of this PATCH (a HEAD also makes it let go of the upload)
        this.offset(url).then(
          (at) => reject(new InterruptedError(`upload interrupted at byte ${at} of ${file.size} (the server keeps them)`, at)),
          () => reject(new InterruptedError(`upload interrupted at byte ${offset} of ${file.size}`, offset)),
        );
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => signal.removeEventListener('abort', onAbort);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          cleanup();
          stream.destroy();
          const a = { status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() };
          try {
            if (a.status === 404 || a.status === 410) throw new GoneError(`tus: ${url} is gone (${a.status})`);
            this.check(a, [204]);
            resolve(Number(a.headers['upload-offset']));
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', (err) => reject(connectionError('tus PATCH', err)));
      });
      req.on('error', (err) => {
        cleanup();
        stream.destroy();
        if (!interrupted) reject(connectionError(`tus PATCH ${url}`, err));
      });
      (async () => {
        let sent = offset;
        for await (const chunk of stream) {
          const data = chunk as Buffer;
          if (!req.write(data)) await new Promise((r) => req.once('drain', r));
          sent += data.length;
          progress.update(sent);
          await pace(data.length);
        }
        req.end();
      })().catch((err: Error) => {
        if (interrupted) return;
        req.destroy();
        reject(new LocalFileError(`${file.path}: ${err.message}`));
      });
    });
  }

  private headers(): Record<string, string> {
    return { ...TUS, authorization: `Bearer ${this.endpoints.token}` };
  }

  private request(url: string, method: string, headers: Record<string, string>) {
    const u = new URL(url);
    return (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method, headers });
  }

  private send(method: string, url: string, headers: Record<string, string>): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = this.request(url, method, { ...this.headers(), ...headers });
      req.setTimeout(60_000, () => req.destroy(new Error('timed out')));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
        res.on('error', (err) => reject(connectionError(`tus ${method}`, err)));
      });
      req.on('error', (err) => reject(connectionError(`tus ${method} ${url}`, err)));
      req.end();
    });
  }

  /** Throws the typed error of an answer not in `ok`. */
  private check(a: Answer, ok: number[]): void {
    if (ok.includes(a.status)) return;
    let message = a.text.split('\n')[0];
    try {
      const body = JSON.parse(a.text) as { message?: string; code?: string };
      message = `${body.code ?? ''} ${body.message ?? ''}`.trim();
    } catch {
      /* not JSON */
    }
    const line = `tus: ${a.status}${message ? ` ${message}` : ''}`;
    if (a.status === 401) throw new AuthError(`${line} (check FERRY_TOKEN or --token)`);
    if (a.status === 403) throw new AuthError(line);
    if (a.status === 404 || a.status === 410) throw new NotFoundError(line);
    // 409: a killed PATCH still holds the upload, or the offset moved; 5xx, 423, 429: try again
    if (a.status === 409 || a.status === 423 || a.status === 429 || a.status >= 500) throw new TransientError(line);
    throw new RefusedError(line);
  }
}
