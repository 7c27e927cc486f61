import { createHash } from 'node:crypto';

/**
 * Every Redis key Ferry uses, in one place. Keys that belong to one upload or one object share a
 * hash tag (`{...}`), so multi-key scripts stay within one slot on Redis Cluster. Client-chosen
 * names never appear inside a tag: they are hashed first (names may contain braces).
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** Upload session hash. */
  upload(uploadId: string): string {
    return `${this.prefix}:up:{${uploadId}}`;
  }

  /** Writer lease of an upload (value `holder:fence`, expires with PX). */
  uploadLease(uploadId: string): string {
    return `${this.prefix}:up:{${uploadId}}:lease`;
  }

  /** An upload's parts (written as ranges: multipart): one '0'/'1' character per part, updated with SETRANGE. */
  uploadParts(uploadId: string): string {
    return `${this.prefix}:up:{${uploadId}}:parts`;
  }

  /** The lease of one part's PUT (value: its holder, expires with PX). */
  uploadPartLease(uploadId: string, partNumber: number): string {
    return `${this.prefix}:up:{${uploadId}}:lease:${partNumber}`;
  }

  /** Sorted set of upload ids scored by their last activity (ms), scanned by the expiry job. */
  uploadsByActivity(): string {
    return `${this.prefix}:{uploads}:by-activity`;
  }

  /** A user's start requests (request digest → upload id): idempotent start. */
  multipartRequests(owner: string): string {
    return `${this.prefix}:mpreq:{${nameTag(owner)}}`;
  }

  /** A user's completed files (`md5:size` → file handle id): dedup of a file started again. */
  multipartDedup(owner: string): string {
    return `${this.prefix}:mpdedup:{${nameTag(owner)}}`;
  }

  /** A file handle (the multipart face of a catalog object). */
  fileHandle(id: string): string {
    return `${this.prefix}:fh:{${id}}`;
  }

  /** Counter allocating file handle ids. */
  fileHandleSequence(): string {
    return `${this.prefix}:{fh}:seq`;
  }

  /** A Hawk nonce seen recently (replay protection). */
  hawkNonce(key: string): string {
    return `${this.prefix}:hawk:{${nameTag(key)}}`;
  }

  /** Catalog entry of a published object. */
  object(name: string): string {
    return `${this.prefix}:obj:{${nameTag(name)}}`;
  }

  /** The last generation a name was published with (in the object's slot; outlives its deletion). */
  objectGeneration(name: string): string {
    return `${this.prefix}:objgen:{${nameTag(name)}}`;
  }

  /** Names that reference (or claimed) a blob, each with the time of its claim (for garbage collection). */
  blobRefs(sha256: string): string {
    return `${this.prefix}:blob:{${sha256}}:claims`;
  }

  /** Set when a blob's last reference went away (ms); cleared by a new claim. */
  blobOrphan(sha256: string): string {
    return `${this.prefix}:blob:{${sha256}}:orphan`;
  }

  /** Set (briefly) while the collector deletes a blob: claims made meanwhile wait for it to end. */
  blobCollecting(sha256: string): string {
    return `${this.prefix}:blob:{${sha256}}:collecting`;
  }

  /** Sorted set of blobs that lost their last reference, scored by when (ms): the collector's queue. */
  blobsOrphaned(): string {
    return `${this.prefix}:{blobs}:orphaned`;
  }

  /** Sorted set of catalog names scored by their `expires` (ms): the expiry job's queue. */
  objectsByExpiry(): string {
    return `${this.prefix}:{objects}:by-expiry`;
  }

  /**
   * Action cache entry (an encoded REAPI ActionResult) of one action in one instance, by the
   * action's SHA-256 alone: Bazel's HTTP cache names an action by its hash (`/ac/{hash}`), the gRPC
   * face by hash and size, and both must find the same entry (the hash determines the size).
   */
  actionResult(instance: string, hash: string): string {
    return `${this.prefix}:ac:{${nameTag(`${instance}\n${hash}`)}}`;
  }

  /** The bounded cache's entries (CAS blobs, action results) by last access (ms): the evictor's queue. */
  cacheLru(): string {
    return `${this.prefix}:{cache}:lru`;
  }

  /** The size of each cache entry (same slot as the LRU). */
  cacheSizes(): string {
    return `${this.prefix}:{cache}:sizes`;
  }

  /** The cache's totals: `bytes` held, `evictedBytes`, `evicted` entries (same slot). */
  cacheTotals(): string {
    return `${this.prefix}:{cache}:totals`;
  }

  /** BullMQ prefix: hash-tagged so every key of a queue lands in one slot. */
  bullPrefix(): string {
    return `{${this.prefix}:bull}`;
  }
}

/** A stable, brace-free tag for a client-chosen name. */
export function nameTag(name: string): string {
  return createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 32);
}
