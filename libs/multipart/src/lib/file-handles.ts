import { type Catalog, type CatalogObject, fileHandleObjectName } from '@ferry/catalog';
import type { Readable } from 'node:stream';
import { InternalError } from '@ferry/errors';
import type { Redis, RedisKeys } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { Publisher } from '@ferry/uploads';
import { FILE_HANDLE_CONCRETE_TYPE, FileHandle } from './model';

/** A file handle's content: Synapse needs the md5 (etag, contentMd5); sha256 addresses the blob. */
export interface Content {
  size: number;
  sha256: string;
  md5: string;
  crc32c?: string;
}

export interface NewFileHandle {
  fileName: string;
  contentType: string;
  owner: string;
  storageLocationId?: number;
}

/**
 * File handles: the multipart face of catalog objects. A handle is a small immutable JSON record
 * (name, type, creator) whose bytes are the catalog object `fileHandle/<id>`, itself pointing at a
 * content-addressed blob; two handles of the same content share the blob.
 */
export class FileHandles {
  /** The one publish sequence every face uses (see Publisher). */
  private readonly publisher: Publisher;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly catalog: Catalog,
    storage: Storage,
  ) {
    this.publisher = new Publisher(storage, catalog);
  }

  /** Claims the blob for the handle's object before its bytes are published (see Catalog.claimBlob). */
  async claimContent(id: string, sha256: string): Promise<void> {
    await this.catalog.claimBlob(sha256, fileHandleObjectName(id));
  }

  /**
   * Moves verified staged bytes (`stagingId`) into the blob `sha256` for the handle `id` (claimed
   * first; idempotent: a repeated assembly finds them there).
   */
  async storeContent(id: string, stagingId: string, sha256: string): Promise<void> {
    await this.publisher.storeStaged(stagingId, sha256, fileHandleObjectName(id));
  }

  async allocateId(): Promise<string> {
    return String(await this.redis.incr(this.keys.fileHandleSequence()));
  }

  /**
   * Publishes the catalog object, then the handle (idempotent: a handle that exists is returned as
   * it is, so a retried assembly yields the same handle).
   */
  async create(id: string, init: NewFileHandle, content: Content): Promise<FileHandle> {
    const now = new Date().toISOString();
    const object: CatalogObject = {
      name: fileHandleObjectName(id),
      size: content.size,
      sha256: content.sha256,
      md5: content.md5,
      ...(content.crc32c ? { crc32c: content.crc32c } : {}),
      contentType: init.contentType,
      owner: init.owner,
      project: '',
      createdAt: now,
      expires: null,
      protocol: 'multipart',
      blob: content.sha256,
    };
    await this.publisher.publish(object);
    const handle: FileHandle = {
      id,
      etag: content.md5,
      concreteType: FILE_HANDLE_CONCRETE_TYPE,
      fileName: init.fileName,
      contentType: init.contentType,
      contentMd5: content.md5,
      contentSize: content.size,
      createdBy: init.owner,
      createdOn: now,
      modifiedOn: now,
      ...(init.storageLocationId !== undefined ? { storageLocationId: init.storageLocationId } : {}),
      status: 'AVAILABLE',
      objectName: object.name,
      contentSha256: content.sha256,
    };
    const set = await this.redis.set(this.keys.fileHandle(id), JSON.stringify(handle), 'NX');
    if (set === 'OK') return handle;
    const existing = await this.get(id);
    if (!existing) throw new InternalError(`file handle ${id} vanished`);
    return existing;
  }

  /**
   * Removes a handle that was never handed out (a dedup at start that did not finish): its catalog
   * object, which releases the blob, then its record, so that one stopped half way leaves the record
   * by which it is found and removed again, never a catalog object no record names. Idempotent.
   */
  async remove(id: string): Promise<void> {
    const object = await this.catalog.get(fileHandleObjectName(id));
    if (object) await this.catalog.deleteIfUnchanged(object.name, object.createdAt);
    await this.redis.del(this.keys.fileHandle(id));
  }

  async get(id: string): Promise<FileHandle | undefined> {
    if (!/^[1-9]\d{0,15}$/.test(id)) return undefined;
    const raw = await this.redis.get(this.keys.fileHandle(id));
    return raw ? (JSON.parse(raw) as FileHandle) : undefined;
  }

  /** The handle's catalog object, if the handle exists and its object and bytes are still there. */
  async liveObject(id: string): Promise<{ handle: FileHandle; object: CatalogObject } | undefined> {
    const handle = await this.get(id);
    if (!handle) return undefined;
    const object = await this.publisher.object(handle.objectName);
    if (!object || object.sha256 !== handle.contentSha256) return undefined;
    if (!(await this.hasContent(object))) return undefined;
    return { handle, object };
  }

  /** Whether the bytes of a handle's object are stored whole (the collector may have taken them). */
  hasContent(object: CatalogObject): Promise<boolean> {
    return this.publisher.hasBlob(object.blob, object.size);
  }

  /** Streams `[start, end)` of a handle's object (the one read path, see Publisher). */
  readContent(object: CatalogObject, start: number, end: number): Readable {
    return this.publisher.readBlob(object.blob, start, end);
  }
}
