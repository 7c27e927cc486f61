import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '@ferry/protocol';
import type { ByteStreamClient, WriteRequest } from '@ferry/protocol';
import type { Endpoints, Options } from './args';
import { InterruptedError, LocalFileError, NotFoundError, RefusedError, TransientError, VerificationError } from './errors';
import { GRPC_CLIENT_OPTIONS, bearerMetadata, fromGrpc } from './grpc-errors';
import { StateStore } from './state';
import type { DownloadResult, LocalFile, ProtocolClient, RemoteStatus, TransferContext, UploadResult } from './transfer';
import { pacer, sizeIfExists, withRetries } from './transfer';
import { verifyAgainstCatalog } from './verify';

const MESSAGE_BYTES = 2 * 1024 * 1024;

/**
 * ByteStream (google.bytestream) on ingest-grpc: QueryWriteStatus for where to resume (NOT_FOUND
 * means 0), Write from exactly there with finish_write on the last message, Read with read_offset.
 */
export class ByteStreamProtocol implements ProtocolClient {
  private client?: ByteStreamClient;
  private readonly states: StateStore;

  constructor(
    private readonly endpoints: Endpoints,
    options: Options,
  ) {
    this.states = new StateStore(options.stateDir);
  }

  private get bytestream(): ByteStreamClient {
    if (!this.client) {
      const { bytestream } = loadProtos();
      this.client = new bytestream.ByteStream(this.endpoints.grpcAddress, grpc.credentials.createInsecure(), GRPC_CLIENT_OPTIONS);
    }
    return this.client;
  }

  private metadata(): grpc.Metadata {
    return bearerMetadata(this.endpoints.token);
  }

  private where(): string {
    return `ByteStream at ${this.endpoints.grpcAddress}`;
  }

  close(): void {
    this.client?.close();
  }

  async status(name: string): Promise<RemoteStatus> {
    return new Promise((resolve, reject) =>
      this.bytestream.QueryWriteStatus({ resource_name: name }, this.metadata(), { deadline: Date.now() + 30_000 }, (err, res) => {
        if (err?.code === grpc.status.NOT_FOUND) resolve({ name, committed: 0, complete: false });
        else if (err || !res) reject(fromGrpc(this.where(), err));
        else resolve({ name, committed: Number(res.committed_size), complete: Boolean(res.complete) });
      }),
    );
  }

  async upload(file: LocalFile, name: string, ctx: TransferContext): Promise<UploadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const first = await withRetries('status', () => this.status(name), retry);
    if (first.complete) {
      if (first.committed !== file.size) {
        throw new RefusedError(
          `${name} already holds another object (${first.committed} bytes, this file has ${file.size}): choose another name`,
        );
      }
      try {
        await verifyAgainstCatalog(this.endpoints, name, file.path, progress, signal);
      } catch (err) {
        if (err instanceof VerificationError)
          throw new RefusedError(`${name} already holds another object of the same size: choose another name`);
        throw err;
      }
      this.states.remove('bytestream', file, name);
      return { name, size: file.size, resumedAt: file.size, alreadyComplete: true };
    }
    if (first.committed > file.size) {
      throw new RefusedError(
        `${name} holds ${first.committed} bytes of an upload larger than this file (${file.size}): choose another name`,
      );
    }
    const previous = this.states.load('bytestream', file, name);
    if (first.committed > 0) {
      progress.note(`resuming at ${first.committed} of ${file.size} bytes${previous ? ` (upload begun ${previous.startedAt})` : ''}`);
    }
    if (!previous) this.states.save('bytestream', file, name, {});
    progress.start(file.size, first.committed);
    try {
      await withRetries(
        'upload',
        async () => {
          const from = (await this.status(name)).committed;
          return this.writeFrom(file, name, from, ctx);
        },
        retry,
      );
    } finally {
      progress.end();
    }
    await verifyAgainstCatalog(this.endpoints, name, file.path, progress, signal);
    this.states.remove('bytestream', file, name);
    return { name, size: file.size, resumedAt: first.committed, alreadyComplete: false };
  }

  /** One Write call from `from` to the end, finishing. Ctrl-C cancels it: InterruptedError. */
  private async writeFrom(file: LocalFile, name: string, from: number, ctx: TransferContext): Promise<number> {
    const { signal, progress } = ctx;
    const pace = pacer(ctx.options.rateLimit, signal);
    let call: grpc.ClientWritableStream<WriteRequest> | undefined;
    let ended = false;
    const answer = new Promise<number>((resolve, reject) => {
      call = this.bytestream.Write(this.metadata(), (err, res) => {
        ended = true;
        if (err || !res) reject(err);
        else resolve(Number(res.committed_size));
      });
    });
    answer.catch(() => undefined);
    const c = call as grpc.ClientWritableStream<WriteRequest>;
    const onAbort = () => c.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (from >= file.size) {
        c.write({ resource_name: name, write_offset: from, finish_write: true });
      } else {
        let offset = from;
        const stream = createReadStream(file.path, { start: from, end: file.size - 1, highWaterMark: MESSAGE_BYTES });
        try {
          for await (const chunk of stream) {
            const data = chunk as Buffer;
            if (ended || signal.aborted) break;
            const finish = offset + data.length >= file.size;
            const ok = c.write({ resource_name: offset === from ? name : '', write_offset: offset, finish_write: finish, data });
            offset += data.length;
            if (!ok) await Promise.race([new Promise((r) => c.once('drain', r)), answer.then(undefined, () => undefined)]);
            progress.update(offset);
            await pace(data.length);
          }
        } catch (err) {
          c.cancel();
          throw new LocalFileError(`${file.path}: ${(err as Error).message}`);
        } finally {
          stream.destroy();
        }
        if (offset < file.size && !ended && !signal.aborted) {
          c.cancel();
          throw new LocalFileError(`${file.path} became shorter while it was read (${offset} of ${file.size} bytes)`);
        }
      }
      c.end();
      const committed = await answer.catch((err) => {
        if (signal.aborted) return -1;
        throw fromGrpc(this.where(), err);
      });
      if (signal.aborted || committed < 0) {
        const at = await this.status(name).then(
          (s) => s.committed,
          () => from,
        );
        throw new InterruptedError(`upload interrupted at byte ${at} of ${file.size} (the server keeps them)`, at);
      }
      if (committed !== file.size) throw new TransientError(`${this.where()}: committed ${committed} of ${file.size} bytes`);
      return committed;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  async download(name: string, file: string, ctx: TransferContext): Promise<DownloadResult> {
    const { progress, signal } = ctx;
    const retry = { signal, progress, attempts: 12 };
    const remote = await withRetries('status', () => this.status(name), retry);
    if (!remote.complete) {
      throw new NotFoundError(
        remote.committed > 0 ? `${name} is not finished yet (${remote.committed} bytes so far): nothing to download` : `${name}: not found`,
      );
    }
    const total = remote.committed;
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

  /** One Read from the local file's size, appended to it. */
  private async readInto(name: string, file: string, total: number, ctx: TransferContext): Promise<void> {
    const { signal, progress } = ctx;
    const pace = pacer(ctx.options.rateLimit, signal);
    const fh = await open(file, 'a').catch((err: NodeJS.ErrnoException) => {
      throw new LocalFileError(`${file}: cannot write it (${err.code})`);
    });
    try {
      let offset = (await fh.stat()).size;
      if (offset >= total) return;
      const call = this.bytestream.Read({ resource_name: name, read_offset: offset, read_limit: 0 }, this.metadata());
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const msg of call) {
          const data = (msg as { data: Buffer }).data;
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
