import { type Redis, type RedisKeys, bindScripts, lua } from '@ferry/redis';

/**
 * The entries of the bounded REAPI cache (CAS blobs, action results), their sizes and last access,
 * in Redis under one hash tag (`{cache}`): an LRU sorted set scored by last access (ms), a hash of
 * sizes, and the totals (`bytes` held, `evictedBytes`, `evicted`). Exact LRU by access time, kept
 * cheaply: one script per call touches every entry a call used (FindMissingBlobs of 10,000 digests
 * is one round trip). Members: `b:<sha256>/<size>` (a CAS blob), `a:<key>` (an action result's
 * Redis key).
 */

/** The keys of every cache script: the LRU, the sizes, the totals (one hash tag). */
type CacheKeys = [lru: string, sizes: string, totals: string];

/**
 * Records entries (ARGV: now, then member, size pairs): each is now the most recently used; one
 * not yet known is added with its size (and a known one whose size changed, an action result
 * written again, is counted at its new size) → bytes held.
 */
const touch3 = lua<{ keys: CacheKeys; args: [nowMs: number, ...entries: (string | number)[]]; result: number }>(
  'touch3',
  `
for i = 2, #ARGV, 2 do
  local member, size = ARGV[i], tonumber(ARGV[i + 1])
  local old = redis.call('HGET', KEYS[2], member)
  if old ~= tostring(size) then
    redis.call('HSET', KEYS[2], member, size)
    redis.call('HINCRBY', KEYS[3], 'bytes', size - tonumber(old or '0'))
  end
  redis.call('ZADD', KEYS[1], ARGV[1], member)
end
return tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')`,
);

/**
 * Forgets an entry (ARGV: member, evicted: '1' when the evictor removed it) → its size, or -1 if it
 * was not known. The totals follow.
 */
const forget3 = lua<{ keys: CacheKeys; args: [member: string, evicted: '0' | '1']; result: number }>(
  'forget3',
  `
local size = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if not size then return -1 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'bytes', -tonumber(size))
if ARGV[2] == '1' then
  redis.call('HINCRBY', KEYS[3], 'evictedBytes', size)
  redis.call('HINCRBY', KEYS[3], 'evicted', 1)
end
return tonumber(size)`,
);

/** A cache entry: a CAS blob or an action result. */
export type CacheEntry = { kind: 'blob'; sha256: string; size: number } | { kind: 'action'; key: string; size: number };

export interface CacheTotals {
  bytes: number;
  evictedBytes: number;
  evicted: number;
}

export class CacheIndex {
  private readonly run;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    this.run = bindScripts(redis, { touch3, forget3 });
  }

  private k(): CacheKeys {
    return [this.keys.cacheLru(), this.keys.cacheSizes(), this.keys.cacheTotals()];
  }

  static blobMember(sha256: string, size: number): string {
    return `b:${sha256}/${size}`;
  }

  static actionMember(key: string): string {
    return `a:${key}`;
  }

  /** Records the use (or arrival) of blobs: each is the most recently used now. Returns the bytes held. */
  async touchBlobs(blobs: readonly { sha256: string; size: number }[], now = Date.now()): Promise<number> {
    // the empty blob always exists, costs nothing and is never evicted
    const entries = blobs.filter((b) => b.size > 0).flatMap((b) => [CacheIndex.blobMember(b.sha256, b.size), b.size]);
    if (entries.length === 0) return this.bytes();
    return this.run.touch3(this.k(), now, ...entries);
  }

  /** Records the use (or writing) of an action result stored under `key`, `size` bytes encoded. */
  async touchAction(key: string, size: number, now = Date.now()): Promise<number> {
    return this.run.touch3(this.k(), now, CacheIndex.actionMember(key), size);
  }

  /** Forgets an entry; `evicted` counts it as evicted. Returns its size, or undefined if it was not known. */
  async forget(member: string, evicted: boolean): Promise<number | undefined> {
    const size = await this.run.forget3(this.k(), member, evicted ? '1' : '0');
    return size < 0 ? undefined : size;
  }

  /** The least recently used entries, oldest first, with their last access (ms). */
  async oldest(limit: number): Promise<{ member: string; entry: CacheEntry | undefined; usedAt: number }[]> {
    const flat = await this.redis.zrange(this.keys.cacheLru(), 0, limit - 1, 'WITHSCORES');
    const members = flat.filter((_, i) => i % 2 === 0);
    const sizes = members.length > 0 ? await this.redis.hmget(this.keys.cacheSizes(), ...members) : [];
    return members.map((member, i) => ({ member, entry: parseMember(member, Number(sizes[i] ?? 0)), usedAt: Number(flat[2 * i + 1]) }));
  }

  /** Marks an entry used now without changing its size (an entry the evictor must leave, looked at again later). */
  async postpone(member: string, now = Date.now()): Promise<void> {
    await this.redis.zadd(this.keys.cacheLru(), 'XX', now, member);
  }

  async bytes(): Promise<number> {
    return Number((await this.redis.hget(this.keys.cacheTotals(), 'bytes')) ?? 0);
  }

  async totals(): Promise<CacheTotals> {
    const [bytes, evictedBytes, evicted] = await this.redis.hmget(this.keys.cacheTotals(), 'bytes', 'evictedBytes', 'evicted');
    return { bytes: Number(bytes ?? 0), evictedBytes: Number(evictedBytes ?? 0), evicted: Number(evicted ?? 0) };
  }
}

function parseMember(member: string, size: number): CacheEntry | undefined {
  if (member.startsWith('a:')) return { kind: 'action', key: member.slice(2), size };
  const m = /^b:([0-9a-f]{64})\/(\d+)$/.exec(member);
  return m ? { kind: 'blob', sha256: m[1], size: Number(m[2]) } : undefined;
}
