import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Endpoints, Options } from './args';
import { InterruptedError, LocalFileError, NotFoundError, RefusedError, TransientError } from './errors';
import { call, httpError, jsonOf, rangedDownload, sendFileRange } from './http';
import { StateStore, inProgress } from './state';
import type { DownloadResult, LocalFile, ProtocolClient, RemoteStatus, TransferContext, UploadResult } from './transfer';
import { pacer, sizeIfExists, sleep, withRetries } from './transfer';
import { verifyAgainstCatalog } from './verify';

const MiB = 1024 * 1024;
const MIN_PART = 8 * MiB;
const MAX_PARTS = 10_000;
/** Presigned URLs asked in one request (at least this many, or twice `--parallel`). */
const URL_BATCH = 8;

interface PresignedUrl {
  uploadPresignedUrl: string;
  signedHeaders?: Record<string, string>;
}

interface MultipartStatus {
  uploadId: string;
  state: 'UPLOADING' | 'COMPLETED' | 'FAILED';
  partsState: string;
  resultFileHandleId?: string;
  errorMessage?: string;
}

/** Parts of at least 8 MiB, whole MiB, at most 10 000 of them. */
export function partSizeFor(size: number): number {
  return Math.max(MIN_PART, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/**
 * Synapse-style multipart on multipart-api: the start is idempotent (the same file, name and part
 * size give the same upload, and its `partsState` says which parts are missing), each missing part
 * PUT to a presigned URL and added with its MD5, `--parallel` at a time, then complete. Presigned
 * URLs are asked in batches (one request for the next few parts); one that expired before its PUT
 * (the server answers 403 "expired") is renewed and the part sent again. The object is the file
 * handle `fileHandle/<id>`; downloads are ranged GETs of its signed URL.
 */
export class MultipartProtocol implements ProtocolClient {
  private readonly states: StateStore;

  constructor(
    private readonly endpoints: Endpoints,
    private readonly options: Options,
  ) {
    this.states = new StateStore(options.stateDir);
  }

  close(): void {
    /* nothing held */
  }

  private auth(): Record<string, string> {
    return { authorization: `Bearer ${this.endpoints.token}` };
  }

  private async api<T>(method: string, path: string, body?: unknown, ok = [200, 201]): Promise<{ status: number; body: T }> {
    const a = await call(
      method,
      `${this.endpoints.multipartUrl}${path}`,
      body === undefined ? this.auth() : { ...this.auth(), 'content-type': 'application/json' },
      body === undefined ? undefined : JSON.stringify(body),
    );
    if (!ok.includes(a.status)) throw httpError('multipart', a);
    return { status: a.status, body: jsonOf<T>(a) as T };
  }

  /** `fileHandle/<id>` (a finished upload), the file name of an upload in progress that the local state knows, or an upload id. */
  async status(name: string): Promise<RemoteStatus> {
    const handle = /^fileHandle\/(.+)$/.exec(name);
    if (handle) {
      const h = (
        await this.api<{ id: string; fileName?: string; contentSize?: number; contentMd5?: string }>(
          'GET',
          `/fileHandle/${encodeURIComponent(handle[1])}`,
        )
      ).body;
      const size = Number(h.contentSize ?? 0);
      return { name, committed: size, complete: true, details: { fileName: h.fileName, contentMd5: h.contentMd5 } };
    }
    const local = this.states.latestFor('multipart', name);
    const published = local ? undefined : this.states.publishedAs('multipart', name);
    if (published) return this.status(published);
    const s = (await this.api<MultipartStatus>('GET', `/file/multipart/${encodeURIComponent(local?.data['uploadId'] ?? name)}`)).body;
    if (local && s.state !== 'COMPLETED') {
      // bytes of the parts added (the last part may be short)
      const partSize = partSizeFor(local.size);
      const bytes = [...s.partsState].reduce(
        (sum, c, i) => sum + (c === '1' ? Math.min(local.size, (i + 1) * partSize) - i * partSize : 0),
        0,
      );
      return inProgress(name, bytes, local, { uploadId: s.uploadId, partsState: s.partsState });
    }
    return {
      name: s.resultFileHandleId ? `fileHandle/${s.resultFileHandleId}` : name,
      committed: local ? local.size : s.partsState.split('').filter((c) => c === '1').length,
      complete: s.state === 'COMPLETED',
      details: { uploadId: s.uploadId, state: s.state, partsState: s.partsState },
    };
  }

  async upload(file: LocalFile, name: string, ctx: TransferContext): Promise<UploadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const partSize = partSizeFor(file.size);
    const previous = this.states.load('multipart', file, name);
    // the whole file's MD5, kept in the state (keyed by path, size and mtime): a resumed run does not read the file for it again
    const md5 = previous?.data['md5'] ?? (await md5File(file.path, signal));
    const request = {
      fileName: name,
      contentType: 'application/octet-stream',
      contentMD5Hex: md5,
      fileSizeBytes: file.size,
      partSizeBytes: partSize,
      generatePreview: false,
    };
    let s = (await withRetries('start', () => this.api<MultipartStatus>('POST', '/file/multipart', request), retry)).body;
    if (s.state === 'FAILED') {
      progress.note(`the previous upload failed (${s.errorMessage ?? 'no reason given'}): starting again`);
      s = (await withRetries('start', () => this.api<MultipartStatus>('POST', '/file/multipart?forceRestart=true', request), retry)).body;
    }
    const uploadId = s.uploadId;
    const partEnd = (n: number) => Math.min(file.size, n * partSize);
    const partBytes = (n: number) => partEnd(n) - (n - 1) * partSize;
    const added = () => [...s.partsState].reduce((sum, c, i) => sum + (c === '1' ? partBytes(i + 1) : 0), 0);
    const from = s.state === 'COMPLETED' ? file.size : added();
    if (s.state === 'UPLOADING' && from > 0) {
      progress.note(
        `resuming at ${from} of ${file.size} bytes (multipart upload ${uploadId}${previous ? `, begun ${previous.startedAt}` : ''}${previous?.data['md5'] ? ', its MD5 kept' : ''})`,
      );
    }
    if (!previous || previous.data['uploadId'] !== uploadId || previous.data['md5'] !== md5)
      this.states.save('multipart', file, name, { uploadId, md5 }, previous?.startedAt);
    if (s.state === 'UPLOADING') {
      progress.start(file.size, from);
      const inFlight = new Map<number, number>();
      let done = from;
      const show = () => progress.update(done + [...inFlight.values()].reduce((a, b) => a + b, 0));
      const missing = [...s.partsState].flatMap((c, i) => (c === '1' ? [] : [i + 1]));
      const urls = this.urlBatches(uploadId, [...missing], Math.max(URL_BATCH, 2 * this.options.parallel));
      const pace = pacer(this.options.rateLimit, signal);
      let failure: unknown;
      const worker = async () => {
        for (let n = missing.shift(); n !== undefined && failure === undefined && !signal.aborted; n = missing.shift()) {
          const part = n;
          try {
            await withRetries(
              `part ${part}`,
              () =>
                this.putPart(uploadId, urls, file, part, (part - 1) * partSize, partEnd(part), ctx, pace, (sent) => {
                  inFlight.set(part, sent);
                  show();
                }),
              retry,
            );
            done += partBytes(part);
          } catch (err) {
            failure ??= err;
          } finally {
            inFlight.delete(part);
            show();
          }
        }
      };
      try {
        await Promise.all(Array.from({ length: Math.min(this.options.parallel, Math.max(1, missing.length)) }, worker));
      } finally {
        progress.end();
      }
      if (signal.aborted || failure instanceof InterruptedError) {
        throw new InterruptedError(`upload interrupted with ${done} of ${file.size} bytes in parts the server keeps`, done);
      }
      if (failure !== undefined) throw failure;
      s = await this.complete(uploadId, ctx);
    }
    const objectName = `fileHandle/${s.resultFileHandleId}`;
    await verifyAgainstCatalog(this.endpoints, objectName, file.path, progress, signal);
    this.states.published('multipart', name, objectName);
    this.states.remove('multipart', file, name);
    return { name: objectName, size: file.size, resumedAt: from, alreadyComplete: from === file.size };
  }

  /**
   * Presigned URLs for `parts` (in that order), asked `batch` at a time: `get(n)` answers part n's
   * (asking it with the next parts that have none yet), `renew(n)` forgets an expired one.
   */
  private urlBatches(uploadId: string, parts: number[], batch: number) {
    const known = new Map<number, Promise<PresignedUrl>>();
    const ask = (numbers: number[]) => {
      const answer = this.api<{ partPresignedUrls: PresignedUrl[] }>('POST', `/file/multipart/${uploadId}/presigned/url/batch`, {
        uploadId,
        partNumbers: numbers,
      });
      numbers.forEach((n, i) => {
        const one = answer.then((a) => {
          const u = a.body.partPresignedUrls[i];
          if (!u) throw new TransientError(`multipart: no presigned URL for part ${n} in the answer`);
          return u;
        });
        one.catch(() => known.delete(n)); // a failed ask is asked again
        known.set(n, one);
      });
    };
    return {
      get: (n: number): Promise<PresignedUrl> => {
        if (!known.has(n)) {
          const at = parts.indexOf(n);
          ask([n, ...parts.slice(at + 1).filter((m) => !known.has(m))].slice(0, batch));
        }
        return known.get(n) as Promise<PresignedUrl>;
      },
      renew: (n: number): void => {
        known.delete(n);
      },
    };
  }

  /** The part's PUT to its presigned URL (renewed once if it expired), and its add (with the MD5 of what was sent). */
  private async putPart(
    uploadId: string,
    urls: ReturnType<MultipartProtocol['urlBatches']>,
    file: LocalFile,
    part: number,
    start: number,
    end: number,
    ctx: TransferContext,
    pace: (n: number) => Promise<void>,
    shown: (sent: number) => void,
  ): Promise<void> {
    let put;
    for (let renewed = false; ; renewed = true) {
      const u = await urls.get(part);
      try {
        put = await sendFileRange('PUT', u.uploadPresignedUrl, u.signedHeaders ?? {}, file.path, start, end, ctx, shown, pace);
      } catch (err) {
        // a broken PUT (the server may have refused an expired URL and closed): the retry asks a new URL
        if (err instanceof TransientError) urls.renew(part);
        throw err;
      }
      if (put.status === 403 && /expired/i.test(put.text)) {
        urls.renew(part);
        ctx.progress.note(`part ${part}: its presigned URL expired before the PUT: renewed`);
        shown(0);
        if (!renewed) continue;
      }
      break;
    }
    if (put.status !== 200) {
      const err = httpError(`multipart part ${part}`, put);
      // an expired presigned URL again: the retry asks for a new one
      throw put.status === 403 ? new TransientError(err.message) : err;
    }
    const partMd5 = await md5File(file.path, ctx.signal, start, end);
    const add = await this.api<{ addPartState: string; errorMessage?: string }>(
      'PUT',
      `/file/multipart/${uploadId}/add/${part}?partMD5Hex=${partMd5}`,
    );
    if (add.body.addPartState !== 'ADD_SUCCESS') {
      const message = `multipart: part ${part} not added: ${add.body.errorMessage ?? add.body.addPartState}`;
      throw /in progress|try again|retry/i.test(message) ? new TransientError(message) : new RefusedError(message);
    }
  }

  /** Complete, again while it answers 202 (the worker assembles and checks the MD5). */
  private async complete(uploadId: string, ctx: TransferContext): Promise<MultipartStatus> {
    for (;;) {
      const r = await withRetries(
        'complete',
        () => this.api<MultipartStatus>('PUT', `/file/multipart/${uploadId}/complete`, undefined, [200, 202]),
        { signal: ctx.signal, progress: ctx.progress, attempts: 12 },
      );
      if (r.status === 200 && r.body.resultFileHandleId) return r.body;
      if (r.body.state === 'FAILED') throw new RefusedError(`multipart: the upload failed: ${r.body.errorMessage ?? 'no reason given'}`);
      if (ctx.signal.aborted) throw new InterruptedError('interrupted while the upload was being assembled', 0);
      await sleep(1000, ctx.signal);
    }
  }

  async download(name: string, file: string, ctx: TransferContext): Promise<DownloadResult> {
    const handle = /^fileHandle\/(.+)$/.exec(name);
    if (!handle) throw new NotFoundError(`multipart downloads name a file handle: fileHandle/<id>, not ${name}`);
    const have = sizeIfExists(file) ?? 0;
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const status = await this.status(name);
    if (have > status.committed)
      throw new LocalFileError(`${file} is larger (${have} bytes) than ${name} (${status.committed}): remove it or choose another file`);
    if (have > 0 && have < status.committed) progress.note(`resuming at ${have} of ${status.committed} bytes`);
    await withRetries(
      'download',
      async () => {
        // a signed URL for each try: never an expired one
        const a = await call(
          'GET',
          `${this.endpoints.multipartUrl}/fileHandle/${encodeURIComponent(handle[1])}/url?redirect=false`,
          this.auth(),
        );
        if (a.status !== 200) throw httpError('multipart', a);
        await rangedDownload('multipart download', a.text.trim(), {}, file, ctx);
      },
      retry,
    );
    await verifyAgainstCatalog(this.endpoints, name, file, progress, signal, 'download');
    return { size: status.committed, resumedAt: have };
  }
}

export async function md5File(path: string, signal?: AbortSignal, start = 0, end?: number): Promise<string> {
  const hash = createHash('md5');
  if (end !== undefined && end <= start) return hash.digest('hex');
  for await (const chunk of createReadStream(path, { start, ...(end !== undefined ? { end: end - 1 } : {}), highWaterMark: MiB, signal })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}
