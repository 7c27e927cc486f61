import type { Catalog } from '@ferry/catalog';
import type { Storage } from '@ferry/storage';

export interface ObjectExpiryReport {
  expiredObjects: number;
  collectedBlobs: number;
}

/**
 * Deletes catalog objects past their `expires` (whichever protocol made them), then collects the
 * blobs no object references any more, in batches. A blob is deleted only after it has had no
 * reference for `graceMs` and only if no publisher claimed it meanwhile (Catalog.collectBlob), so a
 * blob a live object references is never removed.
 */
export class ObjectExpiry {
  constructor(
    private readonly catalog: Catalog,
    private readonly storage: Storage,
    private readonly graceMs: number,
  ) {}

  async run(now = Date.now(), batchSize = 500): Promise<ObjectExpiryReport> {
    let expiredObjects = 0;
    for (const name of await this.catalog.expiredNames(now, batchSize)) {
      const object = await this.catalog.get(name);
      if (!object) {
        await this.catalog.delete(name); // drops the stale index entry
        continue;
      }
      if (!object.expires) {
        // an object that never expires, under a name left in the index by an interrupted delete
        await this.catalog.forgetExpiry(name);
        continue;
      }
      if (Date.parse(object.expires) > now) continue;
      // only the object examined: one published again under the name meanwhile stays
      if (await this.catalog.deleteIfUnchanged(name, object.createdAt)) expiredObjects++;
    }
    let collectedBlobs = 0;
    const cutoff = now - this.graceMs;
    for (const sha256 of await this.catalog.orphanedBlobs(cutoff, batchSize)) {
      if (!(await this.catalog.collectBlob(sha256, cutoff))) continue;
      try {
        await this.storage.deleteBlob(sha256);
      } catch (err) {
        await this.catalog.requeueBlob(sha256); // the next run tries again
        throw err;
      } finally {
        await this.catalog.finishCollection(sha256);
      }
      collectedBlobs++;
    }
    return { expiredObjects, collectedBlobs };
  }
}
