import { type Catalog, type CatalogObject, casObjectName } from '@ferry/catalog';
import { ResourceExhaustedError } from '@ferry/errors';
import type { Redis, RedisKeys } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { type CacheEntry, CacheIndex } from './cache-index';
import { cacheMetrics } from './cache-metrics';

/**
 * A CAS write the bounded cache cannot take: gRPC RESOURCE_EXHAUSTED, and on Bazel's HTTP cache 507
 * Insufficient Storage (where RESOURCE_EXHAUSTED is otherwise 429, a rate limit).
 */
export class CacheFullError extends ResourceExhaustedError {}

export interface CacheLimits {
  /** What the cache (CAS blobs and action results) may hold; 0: no limit, nothing is evicted. */
  maxBytes: number;
  /** Eviction starts above this many bytes... */
  highBytes: number;
  /** ...and stops at this many. */
  lowBytes: number;
  /** An entry used more recently than this is never evicted (a blob being read, or just written). */
  minAgeMs: number;
  /** A blob claimed by a publisher more recently than this is not deleted (an upload in flight: see Catalog.collectBlob). */
  claimGraceMs: number;
}

export interface EvictionReport {
  evictedEntries: number;
  evictedBytes: number;
  /** Entries the pass had to leave: shared with objects of other protocols, or claimed by an upload in flight. */
  pinnedBytes: number;
  bytes: number;
}

const BATCH = 200;
/** Evictions under way at once. */
const CONCURRENCY = 16;

/**
 * The REAPI cache bounded by size (FERRY_CACHE_MAX_BYTES): CAS blobs and action results are
 * recorded with their size and last use (CacheIndex); above the high watermark the least recently
 * used are evicted down to the low one. Never evicted: what was used within `minAgeMs` (a blob
 * being read, an upload that just finished), a blob another protocol's object also references (it
 * keeps its own lifetime; evicting the cache's name would free nothing), a blob an upload in flight
 * has claimed. An evicted blob loses its catalog name `blobs/{sha256}/{size}` and its bytes; an
 * action result whose outputs are gone is a miss (GetActionResult), so a build reruns the action
 * instead of failing. When what is held cannot be evicted, a new write is refused
 * (`admit`: RESOURCE_EXHAUSTED) before anything is stored.
 *
 * Stateless: the index is in Redis under one hash tag, so every ingest replica and every worker
 * shares it; two evictors at once only race to evict the same oldest entries, each step of which
 * is idempotent.
 */
export class BoundedCache {
  constructor(
    readonly index: CacheIndex,
    private readonly redis: Redis,
    private readonly catalog: Catalog,
    private readonly storage: Storage,
    readonly limits: CacheLimits,
  ) {}

  get bounded(): boolean {
    return this.limits.maxBytes > 0;
  }

  /** A CAS object was published: it counts from now on (a publish listener of the upload engine). */
  async published(object: CatalogObject): Promise<void> {
    if (object.name === casObjectName(object.sha256, object.size)) await this.index.touchBlobs([object]);
  }

  /**
   * Makes room for `size` more bytes, evicting what it may; ResourceExhaustedError when what the
   * cache holds cannot be evicted. Called before a CAS write stores anything.
   */
  async admit(size: number, now = Date.now()): Promise<void> {
    if (!this.bounded) return;
    const { maxBytes } = this.limits;
    if (size > maxBytes) {
      throw new CacheFullError(`a blob of ${size} bytes does not fit in the cache (FERRY_CACHE_MAX_BYTES ${maxBytes})`);
    }
    if ((await this.index.bytes()) + size <= maxBytes) return;
    const report = await this.evictTo(Math.min(this.limits.lowBytes, maxBytes - size), now);
    if (report.bytes + size <= maxBytes) return;
    cacheMetrics.refused.inc();
    throw new CacheFullError(
      `the cache is full (${report.bytes} of ${maxBytes} bytes) of entries that cannot be evicted now ` +
        `(used in the last ${Math.round(this.limits.minAgeMs / 1000)} s, shared with other objects, or being uploaded); retry later`,
    );
  }

  /** One eviction pass (the worker's): down to the low watermark once above the high one. */
  async run(now = Date.now()): Promise<EvictionReport> {
    const bytes = await this.index.bytes();
    cacheMetrics.bytes.set(bytes);
    if (!this.bounded || bytes <= this.limits.highBytes) return { evictedEntries: 0, evictedBytes: 0, pinnedBytes: 0, bytes };
    return this.evictTo(this.limits.lowBytes, now);
  }

  private async evictTo(target: number, now: number): Promise<EvictionReport> {
    const report: EvictionReport = { evictedEntries: 0, evictedBytes: 0, pinnedBytes: 0, bytes: await this.index.bytes() };
    const usedBefore = now - this.limits.minAgeMs;
    const looked = new Set<string>();
    // (the bytes the evictions under way will free: no more are begun than the target needs)
    let freeing = 0;
    while (report.bytes - freeing > target) {
      const batch = (await this.index.oldest(BATCH)).filter((c) => !looked.has(c.member));
      if (batch.length === 0) break;
      const due = batch.findIndex((c) => c.usedAt > usedBefore); // everything from it on was used later still
      const candidates = due < 0 ? batch : batch.slice(0, due);
      let next = 0;
      // several at once: each is a few Redis round trips and a delete, independent of the others
      await Promise.all(
        Array.from({ length: Math.min(CONCURRENCY, candidates.length) }, async () => {
          while (next < candidates.length && report.bytes - freeing > target) {
            const { member, entry } = candidates[next++];
            looked.add(member);
            const size = entry?.size ?? 0;
            freeing += size;
            try {
              const outcome = await this.evict(member, entry, now);
              if (outcome === 'pinned') report.pinnedBytes += size;
              if (outcome !== 'pinned') report.bytes -= size;
              if (outcome === 'evicted') {
                report.evictedEntries++;
                report.evictedBytes += size;
                cacheMetrics.evicted.inc({ kind: entry?.kind ?? 'blob' });
                cacheMetrics.evictedBytes.inc(size);
              }
            } finally {
              freeing -= size;
            }
          }
        }),
      );
      report.bytes = await this.index.bytes();
      if (due >= 0) break;
    }
    report.bytes = await this.index.bytes();
    cacheMetrics.bytes.set(report.bytes);
    return report;
  }

  /**
   * Evicts one entry: 'evicted' (its bytes are gone), 'forgotten' (nothing of the cache's was left:
   * its record is dropped), or 'pinned' when it must stay (looked at again later).
   */
  private async evict(member: string, entry: CacheEntry | undefined, now: number): Promise<'evicted' | 'forgotten' | 'pinned'> {
    if (!entry) return this.forgotten(member);
    if (entry.kind === 'action') {
      if ((await this.redis.del(entry.key)) === 0) return this.forgotten(member); // (its lifetime ended it)
      await this.index.forget(member, true);
      return 'evicted';
    }
    const name = casObjectName(entry.sha256, entry.size);
    // another object (another protocol's, or one an upload in flight is publishing) shares the blob
    if ((await this.catalog.referencesOf(entry.sha256)).some((ref) => ref !== name)) {
      await this.index.postpone(member, now);
      return 'pinned';
    }
    const object = await this.catalog.get(name);
    // the cache's name is gone already (deleted, or never made: a blob only other objects held)
    if (object?.blob !== entry.sha256) return this.forgotten(member);
    await this.catalog.deleteIfUnchanged(name, object.createdAt);
    // the bytes, unless a claim arrived meanwhile (a publisher that finds the blob present keeps it)
    if (await this.catalog.collectBlob(entry.sha256, now - this.limits.claimGraceMs)) {
      try {
        await this.storage.deleteBlob(entry.sha256);
      } catch (err) {
        await this.catalog.requeueBlob(entry.sha256);
        throw err;
      } finally {
        await this.catalog.finishCollection(entry.sha256);
      }
    } else if ((await this.catalog.referencesOf(entry.sha256)).length > 0) {
      await this.index.postpone(member, now);
      return 'pinned';
    }
    await this.index.forget(member, true);
    return 'evicted';
  }

  private async forgotten(member: string): Promise<'forgotten'> {
    await this.index.forget(member, false);
    return 'forgotten';
  }
}

/** The bounded cache as configured (FERRY_CACHE_*): the same on every replica of ingest-grpc and the worker. */
export function createBoundedCache(
  limits: Omit<CacheLimits, 'claimGraceMs'>,
  claimGraceMs: number,
  redis: Redis,
  keys: RedisKeys,
  catalog: Catalog,
  storage: Storage,
): BoundedCache {
  return new BoundedCache(new CacheIndex(redis, keys), redis, catalog, storage, { ...limits, claimGraceMs });
}
