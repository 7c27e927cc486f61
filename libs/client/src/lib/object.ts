import { randomUUID } from 'node:crypto';
import type { Endpoints, Options } from './args';
import { objectApi } from './catalog';
import { InterruptedError, LocalFileError, RefusedError, TransientError } from './errors';
import { call, httpError, rangedDownload, sendFileRange } from './http';
import { StateStore } from './state';
import type { DownloadResult, LocalFile, ProtocolClient, RemoteStatus, TransferContext, UploadResult } from './transfer';
import { sha256File, sizeIfExists, withRetries } from './transfer';
import { verifyAgainstCatalog } from './verify';

/** The Taskcluster project of the objects `ferry` creates. */
const PROJECT = 'ferry';
/** How long an uploaded object is kept (Taskcluster objects always expire). */
const KEEP_MS = 365 * 86_400_000;
const TASKCLUSTER_CREDENTIALS = 'TASKCLUSTER_CLIENT_ID / TASKCLUSTER_ACCESS_TOKEN';

/** A slugid: a v4 UUID in URL-safe base64 (Taskcluster's upload ids). */
function slugid(): string {
  return Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64url');
}

interface PutUrl {
  url: string;
  headers: Record<string, string>;
}

/**
 * The Taskcluster object API on object-api, Hawk-signed with clientId / accessToken: createUpload
 * (idempotent for one uploadId, kept in the local state file) proposing a putUrl, the PUT of the
 * whole file, finishUpload with its sha256. A putUrl cannot resume: after an interruption the same
 * upload is continued with a new putUrl (also when one expired) and the PUT starts again at 0.
 * Downloads are start-download's getUrl, read with ranged GETs (a partial file continues).
 */
export class ObjectProtocol implements ProtocolClient {
  private readonly states: StateStore;

  constructor(
    private readonly endpoints: Endpoints,
    options: Options,
  ) {
    this.states = new StateStore(options.stateDir);
  }

  close(): void {
    /* nothing held */
  }

  private path(name: string): string {
    return encodeURIComponent(name);
  }

  async status(name: string): Promise<RemoteStatus> {
    const meta = (await objectApi(this.endpoints, 'GET', `/metadata/${this.path(name)}`)) as {
      projectId: string;
      expires: string;
      hashes: Record<string, string>;
    };
    // the size: the last byte range of the object's signed URL says it (Content-Range: bytes 0-0/<size>)
    const r = (await objectApi(
      this.endpoints,
      'PUT',
      `/start-download/${this.path(name)}`,
      { acceptDownloadMethods: { getUrl: true } },
      TASKCLUSTER_CREDENTIALS,
    )) as {
      url: string;
    };
    const a = await call('GET', r.url, { range: 'bytes=0-0' });
    const size = Number(/\/(\d+)$/.exec(String(a.headers['content-range'] ?? ''))?.[1] ?? (a.status === 200 ? a.text.length : 0));
    return {
      name,
      committed: size,
      complete: true,
      details: { projectId: meta.projectId, expires: meta.expires, sha256: meta.hashes?.['sha256'] },
    };
  }

  async upload(file: LocalFile, name: string, ctx: TransferContext): Promise<UploadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const state = this.states.load('object', file, name);
    const uploadId = state?.data['uploadId'] ?? slugid();
    const expires = state?.data['expires'] ?? new Date(Date.now() + KEEP_MS).toISOString();
    if (state) {
      progress.note(`continuing upload ${uploadId} (begun ${state.startedAt}): the object API's putUrl cannot resume, so resuming at 0`);
    } else {
      this.states.save('object', file, name, { uploadId, expires });
    }
    const sha256 = await sha256File(file.path, signal);
    const create = async (): Promise<PutUrl> => {
      const r = (await objectApi(
        this.endpoints,
        'PUT',
        `/upload/${this.path(name)}`,
        {
          projectId: PROJECT,
          uploadId,
          expires,
          proposedUploadMethods: { putUrl: { contentType: 'application/octet-stream', contentLength: file.size } },
        },
        TASKCLUSTER_CREDENTIALS,
      )) as { uploadMethod: { putUrl?: PutUrl } };
      if (!r.uploadMethod.putUrl) throw new RefusedError('object API: no putUrl offered for this upload');
      return r.uploadMethod.putUrl;
    };
    progress.start(file.size, 0);
    try {
      await withRetries(
        'upload',
        async () => {
          // a new putUrl for each try: an expired one is renewed
          const put = await create();
          const a = await sendFileRange('PUT', put.url, put.headers, file.path, 0, file.size, ctx, (sent) => progress.update(sent));
          if (a.status !== 200) {
            const err = httpError('object API PUT', a, TASKCLUSTER_CREDENTIALS);
            throw a.status === 403 ? new TransientError(err.message) : err;
          }
        },
        retry,
      );
    } catch (err) {
      if (err instanceof InterruptedError)
        throw new InterruptedError('upload interrupted (the object API PUT starts again at 0 next time)', 0);
      throw err;
    } finally {
      progress.end();
    }
    await withRetries(
      'finish',
      () =>
        objectApi(
          this.endpoints,
          'POST',
          `/finish-upload/${this.path(name)}`,
          { projectId: PROJECT, uploadId, hashes: { sha256 } },
          TASKCLUSTER_CREDENTIALS,
        ),
      retry,
    );
    await verifyAgainstCatalog(this.endpoints, name, file.path, progress, signal);
    this.states.remove('object', file, name);
    return { name, size: file.size, resumedAt: 0, alreadyComplete: false };
  }

  async download(name: string, file: string, ctx: TransferContext): Promise<DownloadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const have = sizeIfExists(file) ?? 0;
    const total = (await withRetries('status', () => this.status(name), retry)).committed;
    if (have > total)
      throw new LocalFileError(`${file} is larger (${have} bytes) than ${name} (${total}): remove it or choose another file`);
    if (have > 0 && have < total) progress.note(`resuming at ${have} of ${total} bytes`);
    await withRetries(
      'download',
      async () => {
        // a new signed URL for each try
        const r = (await objectApi(
          this.endpoints,
          'PUT',
          `/start-download/${this.path(name)}`,
          { acceptDownloadMethods: { getUrl: true } },
          TASKCLUSTER_CREDENTIALS,
        )) as {
          method: string;
          url: string;
        };
        await rangedDownload('object API download', r.url, {}, file, ctx);
      },
      retry,
    );
    await verifyAgainstCatalog(this.endpoints, name, file, progress, signal, 'download');
    return { size: total, resumedAt: have };
  }
}
