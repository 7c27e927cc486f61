import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { loadProtos } from '@ferry/protocol';
import type {
  GcsObject__Output,
  GcsQueryWriteStatusResponse__Output,
  GcsWriteObjectRequest,
  ReadObjectResponse__Output,
  StorageClient,
} from '@ferry/protocol';
import type { Endpoints, Options } from './args';
import { InterruptedError, LocalFileError, NotFoundError, RefusedError, TransientError, UsageError } from './errors';
import { GRPC_CLIENT_OPTIONS, bearerMetadata, fromGrpc } from './grpc-errors';
import { StateStore, inProgress } from './state';
import type { DownloadResult, LocalFile, ProtocolClient, RemoteStatus, TransferContext, UploadResult } from './transfer';
import { pacer, sizeIfExists, withRetries } from './transfer';
import { verifyAgainstCatalog } from './verify';

const MESSAGE_BYTES = 2 * 1024 * 1024;

/** `bucket/object` as the GCS v2 API names it; the catalog name is the same `bucket/object`. */
function split(name: string): { bucket: string; object: string } {
  const m = /^([^/]+)\/(.+)$/.exec(name);
  if (!m) throw new UsageError(`GCS names are <bucket>/<object>: "${name}" has no bucket`);
  return { bucket: `projects/_/buckets/${m[1]}`, object: m[2] };
}

/**
 * GCS v2 (google.storage.v2) resumable writes on ingest-grpc: StartResumableWrite (the upload id
 * kept in the local state file), QueryWriteStatus for the persisted size, WriteObject from there
 * with a crc32c per message, finish_write on the last; ReadObject with read_offset for downloads.
 */
export class GcsProtocol implements ProtocolClient {
  private client?: StorageClient;
  private readonly states: StateStore;

  constructor(
    private readonly endpoints: Endpoints,
    options: Options,
  ) {
    this.states = new StateStore(options.stateDir);
  }

  private get storage(): StorageClient {
    if (!this.client) {
      const { storage } = loadProtos();
      this.client = new storage.Storage(this.endpoints.grpcAddress, grpc.credentials.createInsecure(), GRPC_CLIENT_OPTIONS);
    }
    return this.client;
  }

  private metadata(): grpc.Metadata {
    return bearerMetadata(this.endpoints.token);
  }

  private where(): string {
    return `GCS at ${this.endpoints.grpcAddress}`;
  }

  close(): void {
    this.client?.close();
  }

  private unary<Res>(method: 'GetObject' | 'StartResumableWrite' | 'QueryWriteStatus', request: object): Promise<Res> {
    return new Promise((resolve, reject) => {
      const fn = this.storage[method].bind(this.storage) as unknown as (
        req: object,
        md: grpc.Metadata,
        options: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res?: Res) => void,
      ) => void;
      fn(request, this.metadata(), { deadline: Date.now() + 60_000 }, (err, res) =>
        err || !res ? reject(fromGrpc(this.where(), err)) : resolve(res),
      );
    });
  }

  /** An upload in progress to `name` (its upload id in the local state): its persisted size; else the object. */
  async status(name: string): Promise<RemoteStatus> {
    const local = this.states.latestFor('gcs', name);
    if (local?.data['uploadId']) {
      try {
        const p = await this.persisted(local.data['uploadId']);
        if (!p.complete) return inProgress(name, p.size, local);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err; // gone (expired): what the catalog holds
      }
    }
    const o = await this.unary<GcsObject__Output>('GetObject', split(name));
    return { name, committed: Number(o.size), complete: true, details: { generation: String(o.generation) } };
  }

  /** The persisted size of an upload (`complete` once it made the object). */
  private async persisted(uploadId: string): Promise<{ size: number; complete: boolean }> {
    const s = await this.unary<GcsQueryWriteStatusResponse__Output>('QueryWriteStatus', { upload_id: uploadId });
    return s.write_status === 'resource'
      ? { size: Number(s.resource?.size), complete: true }
      : { size: Number(s.persisted_size), complete: false };
  }

  async upload(file: LocalFile, name: string, ctx: TransferContext): Promise<UploadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const { bucket, object } = split(name);
    const state = this.states.load('gcs', file, name);
    let uploadId = state?.data['uploadId'];
    let from = 0;
    if (uploadId) {
      const known = uploadId;
      try {
        const p = await withRetries('status', () => this.persisted(known), retry);
        from = p.size;
        if (from > 0 && !p.complete) progress.note(`resuming at ${from} of ${file.size} bytes (GCS upload begun ${state?.startedAt})`);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        progress.note('the previous upload is gone on the server (expired): starting again');
        uploadId = undefined;
      }
    }
    let id: string;
    if (uploadId) id = uploadId;
    else {
      const started = await withRetries(
        'start',
        () =>
          this.unary<{ upload_id: string }>('StartResumableWrite', {
            write_object_spec: { resource: { bucket, name: object, content_type: 'application/octet-stream' }, object_size: file.size },
          }),
        retry,
      );
      id = started.upload_id;
      this.states.save('gcs', file, name, { uploadId: id });
    }
    progress.start(file.size, from);
    try {
      await withRetries(
        'upload',
        async () => {
          const p = await this.persisted(id);
          if (p.complete) return;
          await this.writeFrom(file, id, p.size, ctx);
        },
        retry,
      );
    } catch (err) {
      if (err instanceof NotFoundError) this.states.remove('gcs', file, name);
      throw err;
    } finally {
      progress.end();
    }
    await verifyAgainstCatalog(this.endpoints, name, file.path, progress, signal);
    this.states.remove('gcs', file, name);
    return { name, size: file.size, resumedAt: from, alreadyComplete: from === file.size };
  }

  private async writeFrom(file: LocalFile, uploadId: string, from: number, ctx: TransferContext): Promise<void> {
    const { signal, progress } = ctx;
    const pace = pacer(ctx.options.rateLimit, signal);
    let call: grpc.ClientWritableStream<GcsWriteObjectRequest> | undefined;
    let ended = false;
    const answer = new Promise<void>((resolve, reject) => {
      call = this.storage.WriteObject(this.metadata(), (err) => {
        ended = true;
        if (err) reject(err);
        else resolve();
      });
    });
    answer.catch(() => undefined);
    const c = call as grpc.ClientWritableStream<GcsWriteObjectRequest>;
    const onAbort = () => c.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (from >= file.size) {
        c.write({ upload_id: uploadId, write_offset: from, finish_write: true });
      } else {
        let offset = from;
        const stream = createReadStream(file.path, { start: from, end: file.size - 1, highWaterMark: MESSAGE_BYTES });
        try {
          for await (const chunk of stream) {
            const content = chunk as Buffer;
            if (ended || signal.aborted) break;
            const ok = c.write({
              ...(offset === from ? { upload_id: uploadId } : {}),
              write_offset: offset,
              checksummed_data: { content, crc32c: crc32c(content) },
              ...(offset + content.length >= file.size ? { finish_write: true } : {}),
            });
            offset += content.length;
            if (!ok) await Promise.race([new Promise((r) => c.once('drain', r)), answer.then(undefined, () => undefined)]);
            progress.update(offset);
            await pace(content.length);
          }
        } catch (err) {
          c.cancel();
          throw new LocalFileError(`${file.path}: ${(err as Error).message}`);
        } finally {
          stream.destroy();
        }
      }
      c.end();
      let failed: unknown;
      await answer.catch((err) => (failed = err));
      if (signal.aborted) {
        const at = await this.persisted(uploadId).then(
          (p) => p.size,
          () => from,
        );
        throw new InterruptedError(`upload interrupted at byte ${at} of ${file.size} (the server keeps them)`, at);
      }
      if (failed !== undefined) throw fromGrpc(this.where(), failed);
      const p = await this.persisted(uploadId);
      if (!p.complete) throw new TransientError(`${this.where()}: the write ended at ${p.size} of ${file.size} bytes`);
      if (p.size !== file.size) throw new RefusedError(`${this.where()}: the object has ${p.size} bytes, the file ${file.size}`);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  async download(name: string, file: string, ctx: TransferContext): Promise<DownloadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const total = (await withRetries('status', () => this.status(name), retry)).committed;
    const have = sizeIfExists(file) ?? 0;
    if (have > total)
      throw new LocalFileError(`${file} is larger (${have} bytes) than ${name} (${total}): remove it or choose another file`);
    if (have > 0 && have < total) progress.note(`resuming at ${have} of ${total} bytes`);
    progress.start(total, have);
    try {
      await withRetries('download', () => this.readInto(name, file, total, ctx), retry);
    } finally {
      progress.end();
    }
    await verifyAgainstCatalog(this.endpoints, name, file, progress, signal, 'download');
    return { size: total, resumedAt: have };
  }

  private async readInto(name: string, file: string, total: number, ctx: TransferContext): Promise<void> {
    const { signal, progress } = ctx;
    const pace = pacer(ctx.options.rateLimit, signal);
    const fh = await open(file, 'a').catch((err: NodeJS.ErrnoException) => {
      throw new LocalFileError(`${file}: cannot write it (${err.code})`);
    });
    try {
      let offset = (await fh.stat()).size;
      if (offset >= total) return;
      const call = this.storage.ReadObject({ ...split(name), read_offset: offset }, this.metadata());
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const msg of call) {
          const data = (msg as ReadObjectResponse__Output).checksummed_data?.content;
          if (!data || data.length === 0) continue;
          await fh.write(data);
          offset += data.length;
          progress.update(offset);
          await pace(data.length);
        }
      } catch (err) {
        if (signal.aborted) throw new InterruptedError(`download interrupted at byte ${offset} of ${total}`, offset);
        throw fromGrpc(this.where(), err);
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      if (signal.aborted) throw new InterruptedError(`download interrupted at byte ${offset} of ${total}`, offset);
      if (offset !== total) throw new TransientError(`${this.where()}: the read ended at byte ${offset} of ${total}`);
    } finally {
      await fh.close();
    }
  }
}
