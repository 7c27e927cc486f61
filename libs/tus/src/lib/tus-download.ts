import type { Readable } from 'node:stream';
import { type Authenticator, type Principal, Scopes, type SignedRequest, type UrlSigner, satisfiesScope } from '@ferry/auth';
import type { CatalogObject } from '@ferry/catalog';
import { NotFoundError, PermissionDeniedError } from '@ferry/errors';
import type { DirectAccess } from '@ferry/storage';
import type { UploadEngine } from '@ferry/uploads';
import { TUS_PROTOCOL, tusObjectName, tusWriteScope } from './tus.service';

export interface TusDownloadOptions {
  /** Lifetime of a signed download URL. */
  urlTtlMs: number;
}

/** A finished tus upload, ready to stream: what the edge needs for its headers and body. */
export interface TusDownload {
  object: CatalogObject;
  /** From the upload's metadata (filetype), as published. */
  contentType: string;
  /** From the upload's metadata (filename, name), else the upload id. */
  fileName: string;
  /** Strong entity tag (quoted): the content's sha256. */
  etag: string;
  /** Streams `[start, end)` of the object. */
  read(start: number, end: number): Readable;
}

const ID = /^[A-Za-z0-9_-]{22}$/;

/** The path of a finished tus upload's download, the one a signed URL signs. */
export function tusDownloadPath(id: string): string {
  return `/files/${id}`;
}

/** The scope that reads the finished tus upload `id` (object `tus/{id}`). */
export function tusReadScope(id: string): string {
  return Scopes.read(tusObjectName(id));
}

/**
 * Downloads of finished tus uploads (tusd's GET), transport-free: the object `tus/{id}` by bearer
 * (read scope `ferry:read:tus/{id}`, or its uploader holding the upload's write scope) or by a signed
 * URL (the multipart file handles' signing: HMAC over method, path and expiry). An upload that is
 * unknown or not finished yet is NotFoundError.
 */
export class TusDownloads {
  constructor(
    private readonly engine: UploadEngine,
    private readonly auth: Authenticator,
    private readonly signer: UrlSigner,
    private readonly options: TusDownloadOptions,
    /** Present when the store serves clients directly (S3): URLs then point at the bucket. */
    private readonly direct?: DirectAccess,
  ) {}

  /** The finished upload `id` for a bearer principal. */
  async open(principal: Principal, id: string): Promise<TusDownload> {
    const readable = satisfiesScope(principal.scopes, tusReadScope(id));
    // the scope check comes before the lookup: nothing is said about uploads the caller may not see
    if (!readable) this.auth.require(principal, tusWriteScope(id));
    const object = await this.finished(id);
    if (!readable && object.owner !== principal.clientId) {
      throw new PermissionDeniedError(`upload ${id} belongs to another client (reading it needs ${tusReadScope(id)})`);
    }
    return this.download(id, object);
  }

  /** The finished upload `id` behind a signed URL (PermissionDeniedError when expired or tampered with). */
  async openSigned(id: string, signed: SignedRequest): Promise<TusDownload> {
    this.signer.verifyRequest(signed);
    return this.download(id, await this.finished(id));
  }

  /** A signed, short-lived download URL of the finished upload `id` (`baseUrl`: scheme://host[:port]). */
  async url(principal: Principal, id: string, baseUrl: string): Promise<string> {
    const download = await this.open(principal, id);
    const expiresInSeconds = Math.floor(this.options.urlTtlMs / 1000);
    if (this.direct) {
      return this.direct.blobGetUrl(download.object.blob, {
        expiresInSeconds,
        contentType: download.contentType,
        fileName: download.fileName,
      });
    }
    const path = tusDownloadPath(id);
    const expiresAt = Math.floor((Date.now() + this.options.urlTtlMs) / 1000);
    return `${baseUrl}${path}?${this.signer.sign({ method: 'GET', path, expiresAt })}`;
  }

  private async finished(id: string): Promise<CatalogObject> {
    const object = ID.test(id) ? await this.engine.object(tusObjectName(id)) : undefined;
    if (!object || object.protocol !== TUS_PROTOCOL) throw new NotFoundError(`no finished tus upload ${id}`);
    return object;
  }

  private download(id: string, object: CatalogObject): TusDownload {
    const metadata = object.metadata ?? {};
    return {
      object,
      contentType: object.contentType,
      fileName: metadata['filename'] || metadata['name'] || id,
      etag: `"${object.sha256}"`,
      read: (start, end) => this.engine.readBlob(object.blob, start, end),
    };
  }
}
