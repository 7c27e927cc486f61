import type { Readable } from 'node:stream';
import type { Catalog, CatalogObject, DeleteOutcome } from '@ferry/catalog';
import type { Storage } from '@ferry/storage';

/**
 * The one way content is published and read, whatever face received it.
 *
 * Publishing is three steps, each idempotent so that any replica can repeat them after a crash:
 * 1. claim the blob for the object's name (`Catalog.claimBlob`): from then on the blob collector
 *    leaves an existing blob of this content alone;
 * 2. move the verified bytes into the content-addressed blob (`storeStaged`: one rename on disk,
 *    one copy/complete on S3; nothing to do when the blob already holds them);
 * 3. put the catalog entry, if absent (`publish`): readers see the object from this moment.
 *
 * Reads go through here too: an object past its `expires` is gone for every face, even before the
 * worker deletes it.
 */
export class Publisher {
  private readonly listeners: ((object: CatalogObject) => Promise<void>)[] = [];

  constructor(
    private readonly storage: Storage,
    private readonly catalog: Catalog,
  ) {}

  /** Calls `listener` with every object published (created, or found identical), after step 3. */
  onPublished(listener: (object: CatalogObject) => Promise<void>): void {
    this.listeners.push(listener);
  }

  /** Steps 1 and 2 for bytes verified in staging (`stagingId`), which are gone afterwards. */
  async storeStaged(stagingId: string, sha256: string, claimant: string): Promise<void> {
    await this.catalog.claimBlob(sha256, claimant);
    await this.storage.publishStaging(stagingId, sha256);
  }

  /** Steps 1 and 2 for verified bytes that arrived whole, in one message. */
  async storeBytes(data: Buffer, sha256: string, claimant: string): Promise<void> {
    await this.catalog.claimBlob(sha256, claimant);
    await this.storage.putBlob(data, sha256);
  }

  /**
   * Step 3: the catalog entry, put if absent; an entry of the same content is the same object
   * (a retry). An expired entry of the name, which the worker has not deleted yet, is replaced.
   * AlreadyExistsError when the name holds other content.
   */
  async publish(object: CatalogObject, now = Date.now()): Promise<CatalogObject> {
    const previous = await this.catalog.get(object.name);
    if (previous && expired(previous, now)) await this.catalog.deleteIfUnchanged(object.name, previous.createdAt);
    const published = await this.catalog.publish(object);
    for (const listener of this.listeners) await listener(published);
    return published;
  }

  /** The published object `name`, unless there is none or it has expired. */
  async object(name: string, now = Date.now()): Promise<CatalogObject | undefined> {
    const object = await this.catalog.get(name);
    return object && !expired(object, now) ? object : undefined;
  }

  /** Whether the blob `sha256` is stored whole, `size` bytes (REAPI's CAS presence). */
  async hasBlob(sha256: string, size: number): Promise<boolean> {
    return (await this.storage.blobSize(sha256)) === size;
  }

  /** Whether each blob is stored whole (REAPI's CAS presence of many digests at once). */
  async hasBlobs(blobs: readonly { sha256: string; size: number }[]): Promise<boolean[]> {
    const sizes = await this.storage.blobSizes(blobs.map((b) => b.sha256));
    return blobs.map((b, i) => sizes[i] === b.size);
  }

  /** Size of the blob `sha256` as stored (0 for the empty blob, which always exists), or undefined. */
  blobSize(sha256: string): Promise<number | undefined> {
    return this.storage.blobSize(sha256);
  }

  /** Streams `[start, end)` of the blob `sha256` (an object's `blob`) in chunks of at most `chunkSize`. */
  readBlob(sha256: string, start: number, end: number, chunkSize?: number): Readable {
    return this.storage.readBlob(sha256, start, end, chunkSize);
  }

  /** Deletes `name` if `protocol` published it and it is still the entry created at `createdAt` (Catalog.deleteOwn). */
  deleteOwn(name: string, createdAt: string, protocol: string): Promise<DeleteOutcome> {
    return this.catalog.deleteOwn(name, createdAt, protocol);
  }
}

function expired(object: CatalogObject, now: number): boolean {
  return !!object.expires && Date.parse(object.expires) <= now;
}
