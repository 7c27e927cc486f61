import IORedis from 'ioredis';
import { RedisKeys } from '@ferry/redis';
import { type TestRedis, allKeys } from '@ferry/testing';

/** The catalog as Redis holds it (docs/architecture.md, "Redis keys"): what the contract checks besides the read paths. */
export interface CatalogView {
  /** Whether there is an entry named `name` (live or expired). */
  has(name: string): Promise<boolean>;
  /** How many entries exist. */
  size(): Promise<number>;
  /** The names that reference (or claimed) the blob of `sha256`. */
  claimants(sha256: string): Promise<string[]>;
  close(): void;
}

export function catalogOf(redis: TestRedis): CatalogView {
  const conn = new IORedis(redis.url, { maxRetriesPerRequest: 3 });
  const keys = new RedisKeys(redis.prefix);
  return {
    has: async (name) => (await conn.exists(keys.object(name))) === 1,
    size: async () => (await allKeys(conn, `${redis.prefix}:obj:*`)).length,
    claimants: (sha256) => conn.hkeys(keys.blobRefs(sha256)),
    close: () => conn.disconnect(),
  };
}
