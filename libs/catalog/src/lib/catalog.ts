import { AlreadyExistsError } from '@ferry/errors';
import { Redis, RedisKeys, bindScripts, codeOf, lua, statuses } from '@ferry/redis';

/**
 * A published object: immutable content (a content-addressed blob) under a name.
 * Names by protocol: ByteStream resource name as is; GCS `<bucket>/<object>`; multipart file
 * handles `fileHandle/<id>`; Taskcluster objects by their own name.
 */
export interface CatalogObject {
  name: string;
  size: number;
  sha256: string;
  /** md5, when the publishing protocol needed it or its client declared it (digests by need). */
  md5?: string;
  /** crc32c as 8 hex digits (big-endian), as GCS reports it in base64 of the same bytes; when computed. */
  crc32c?: string;
  contentType: string;
  owner: string;
  project: string;
  createdAt: string;
  /** ISO date after which the object is removed, or null for no expiry. */
  expires: string | null;
  protocol: string;
  /** The blob holding the bytes: its sha256. */
  blob: string;
  /** sha512, when the uploader's protocol provides it (the object API does). */
  sha512?: string;
  /**
   * GCS generation. A publisher that wants one passes 0 and the catalog assigns it atomically at
   * publication: max(the clock in microseconds, the name's last generation + 1), so generations of
   * a name increase across replicas whatever their clocks say, also after a delete (the last
   * generation is kept for GENERATION_MEMORY_MS). Objects without one present `createdAt` in µs.
   */
  generation?: number;
  /** User metadata (GCS `metadata`), when the protocol carries it. */
  metadata?: Record<string, string>;
}

const FIELDS: (keyof CatalogObject)[] = [
  'name',
  'size',
  'sha256',
  'md5',
  'crc32c',
  'contentType',
  'owner',
  'project',
  'createdAt',
  'expires',
  'protocol',
  'blob',
  'sha512',
  'generation',
  'metadata',
];

/**
 * How long the catalog remembers a name's last generation after publishing it: far longer than
 * any clock skew between replicas, after which the clock alone keeps generations increasing.
 */
export const GENERATION_MEMORY_MS = 7 * 24 * 3600 * 1000;

/*
 * The catalog's Lua scripts (declared, bound and called as `lua` in @ferry/redis says). Each works
 * within one hash tag, so within one slot on Redis Cluster: an object's entry and its last
 * generation share the name's tag (`obj:{<name tag>}`, `objgen:{<name tag>}`); a blob's
 * references, orphan mark and collection mark share the blob's (`blob:{<sha256>}:...`).
 */

/** The keys of a blob's collection state, in the order its scripts take them. */
type BlobKeys = [refs: string, orphan: string, collecting: string];

const Put = statuses('created', 'exists');
/**
 * KEYS: object, last generation (the name's tag). ARGV: now (µs), memory (ms), field, value, ... →
 * {created, generation assigned or '', {}}, else {exists, '', the existing hash as a flat list}.
 * A `generation` field of 0 is replaced by the next one.
 */
const putIfAbsent2 = lua<{
  keys: [object: string, lastGeneration: string];
  args: [nowUs: string, memoryMs: string, ...fields: string[]];
  result: [status: string, generation: string, existing: string[]];
}>(
  'putIfAbsent2',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', '', redis.call('HGETALL', KEYS[1])} end
local generation = ''
for i = 3, #ARGV, 2 do
  if ARGV[i] == 'generation' and ARGV[i + 1] == '0' then
    local last = tonumber(redis.call('GET', KEYS[2]) or '0')
    generation = string.format('%.0f', math.max(tonumber(ARGV[1]), last + 1))
    redis.call('SET', KEYS[2], generation, 'PX', ARGV[2])
    ARGV[i + 1] = generation
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return {'created', generation, {}}`,
);

/**
 * KEYS: the blob's (its tag). ARGV: name, now → claims the blob for name and clears any orphan
 * mark; returns the milliseconds a collection of this blob still runs (0: none).
 */
const claim3 = lua<{ keys: BlobKeys; args: [name: string, nowMs: number]; result: number }>(
  'claim3',
  `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
return math.max(0, redis.call('PTTL', KEYS[3]))`,
);

const Release = statuses('orphaned', 'referenced');
/** KEYS: the blob's (its tag). ARGV: name, now → orphaned if that was the last reference (the blob is now an orphan), else referenced. */
const release3 = lua<{ keys: BlobKeys; args: [name: string, nowMs: number]; result: string }>(
  'release3',
  `
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) > 0 then return 'referenced' end
redis.call('SET', KEYS[2], ARGV[2], 'NX')
return 'orphaned'`,
);

const Collect = statuses('collectable', 'kept');
/**
 * KEYS: the blob's (its tag) → collectable if the blob is an orphan with no reference: the mark is
 * gone and a collection is under way (claims wait for it) until finishCollection or 60 s; else kept.
 */
const collect3 = lua<{ keys: BlobKeys; args: []; result: string }>(
  'collect3',
  `
if redis.call('HLEN', KEYS[1]) > 0 or redis.call('EXISTS', KEYS[2]) == 0 then return 'kept' end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], '1', 'PX', 60000)
return 'collectable'`,
);

const Requeue = statuses('orphaned', 'referenced');
/**
 * KEYS: the blob's (its tag). ARGV: now → marks the blob an orphan again unless it is referenced (a
 * failed deletion): orphaned, else referenced.
 */
const requeue3 = lua<{ keys: BlobKeys; args: [nowMs: number]; result: string }>(
  'requeue3',
  `
if redis.call('HLEN', KEYS[1]) > 0 then return 'referenced' end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return 'orphaned'`,
);

const Delete = statuses('deleted', 'owner', 'changed');
/**
 * KEYS: object. ARGV: createdAt, protocol ('' for any) → {deleted, blob} if it was deleted (it
 * still had that createdAt and was published by that protocol), {owner, protocol} if another
 * protocol published it, else {changed, ''}.
 */
const deleteIf1 = lua<{ keys: [object: string]; args: [createdAt: string, protocol: string]; result: [status: string, detail: string] }>(
  'deleteIf1',
  `
local fields = redis.call('HMGET', KEYS[1], 'createdAt', 'protocol', 'blob')
if fields[1] ~= ARGV[1] then return {'changed', ''} end
if ARGV[2] ~= '' and fields[2] ~= ARGV[2] then return {'owner', fields[2]} end
redis.call('DEL', KEYS[1])
return {'deleted', fields[3]}`,
);

/** What a conditional delete did: deleted it, found it changed (or gone), or found another protocol's object. */
export type DeleteOutcome = { deleted: true } | { deleted: false; ownedBy?: string };

export type PutResult = { created: true; object: CatalogObject } | { created: false; object: CatalogObject };

/**
 * The catalog of published objects, in Redis: one hash per object under the object's hash tag, and
 * per blob the set of names referencing it (written before the object, so a blob is never without
 * its reference while an object points at it; garbage collection double-checks references).
 */
export class Catalog {
  private readonly run;

  /**
   * @param clockMs the clock generations start from (injectable for tests of skewed replicas).
   */
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly clockMs: () => number = Date.now,
  ) {
    this.run = bindScripts(redis, { putIfAbsent2, deleteIf1, claim3, release3, collect3, requeue3 });
  }

  /** The keys of a blob's collection state, in the order its scripts take them (one hash tag: the sha256). */
  private blobKeys(sha256: string): BlobKeys {
    return [this.keys.blobRefs(sha256), this.keys.blobOrphan(sha256), this.keys.blobCollecting(sha256)];
  }

  /**
   * Claims a blob for `name` before its bytes are published: from then on the collector leaves the
   * blob alone, so a publisher that finds the blob present can rely on it staying. Publishers call
   * this first, then make sure the blob exists, then publish the catalog entry.
   */
  async claimBlob(sha256: string, name: string): Promise<void> {
    // A collection decided just before this claim may still be deleting the bytes: wait for it,
    // so that "the blob is present" means it stays (or the publisher sees it gone and writes it).
    for (;;) {
      const collectingMs = await this.run.claim3(this.blobKeys(sha256), name, Date.now());
      if (collectingMs <= 0) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(collectingMs, 25)));
    }
  }

  /** Ends a collection decided by collectBlob (after the bytes are deleted): waiting claims proceed. */
  async finishCollection(sha256: string): Promise<void> {
    await this.redis.del(this.keys.blobCollecting(sha256));
  }

  /**
   * Puts a blob whose deletion failed back in the collector's queue, an orphan again (collectBlob
   * took its mark), unless a claim arrived meanwhile: else nothing would try again.
   */
  async requeueBlob(sha256: string): Promise<void> {
    codeOf('requeue3', Requeue, await this.run.requeue3(this.blobKeys(sha256), Date.now()));
    await this.redis.zadd(this.keys.blobsOrphaned(), Date.now(), sha256);
  }

  /** Drops a name from the expiry index (an entry left over by an interrupted delete). */
  async forgetExpiry(name: string): Promise<void> {
    await this.redis.zrem(this.keys.objectsByExpiry(), name);
  }

  /**
   * Deletes an object if it is still the one the caller examined (same createdAt): an expiry
   * decision never removes an object published again under the name meanwhile.
   */
  async deleteIfUnchanged(name: string, createdAt: string): Promise<boolean> {
    return (await this.deleteIf(name, createdAt, '')).deleted;
  }

  /**
   * Deletes an object if it is still the one the caller examined (same createdAt) and `protocol`
   * published it, in one step: a face deletes only its own objects (ownedBy names the owner else).
   */
  async deleteOwn(name: string, createdAt: string, protocol: string): Promise<DeleteOutcome> {
    return this.deleteIf(name, createdAt, protocol);
  }

  private async deleteIf(name: string, createdAt: string, protocol: string): Promise<DeleteOutcome> {
    const answer = await this.run.deleteIf1([this.keys.object(name)], createdAt, protocol);
    const outcome = codeOf('deleteIf1', Delete, answer);
    if (outcome === 'owner') return { deleted: false, ownedBy: answer[1] };
    if (outcome === 'changed') return { deleted: false };
    await this.redis.zrem(this.keys.objectsByExpiry(), name);
    await this.releaseBlob(answer[1], name);
    return { deleted: true };
  }

  /**
   * Drops a reference. The blob is queued for the collector even when references remain: some of
   * them may be claims of publishers that died before publishing, which only the collector (after
   * the grace period) recognises and drops.
   */
  private async releaseBlob(sha256: string, name: string): Promise<void> {
    codeOf('release3', Release, await this.run.release3(this.blobKeys(sha256), name, Date.now()));
    await this.redis.zadd(this.keys.blobsOrphaned(), Date.now(), sha256);
  }

  async get(name: string): Promise<CatalogObject | undefined> {
    return decode(await this.redis.hgetall(this.keys.object(name)));
  }

  /**
   * Publishes `object` unless the name is taken; returns what the name holds afterwards (with the
   * generation the catalog assigned, when asked for one).
   */
  async putIfAbsent(object: CatalogObject): Promise<PutResult> {
    await this.claimBlob(object.blob, object.name);
    const args = FIELDS.flatMap((f) => [f, encodeField(object[f])]);
    const nowUs = String(Math.floor(this.clockMs()) * 1000);
    const answer = await this.run.putIfAbsent2(
      [this.keys.object(object.name), this.keys.objectGeneration(object.name)],
      nowUs,
      String(GENERATION_MEMORY_MS),
      ...args,
    );
    const [, generation, existing] = answer;
    if (codeOf('putIfAbsent2', Put, answer) === 'created') {
      if (object.expires) await this.redis.zadd(this.keys.objectsByExpiry(), Date.parse(object.expires), object.name);
      return { created: true, object: generation ? { ...object, generation: Number(generation) } : object };
    }
    const current = decode(pairs(existing));
    if (!current) throw new Error('catalog entry disappeared');
    if (current.blob !== object.blob) await this.releaseBlob(object.blob, object.name);
    return { created: false, object: current };
  }

  /**
   * Publishes `object`, or accepts an identical existing one (same sha256 and size).
   * Throws AlreadyExistsError when the name holds different content: published objects are immutable.
   */
  async publish(object: CatalogObject): Promise<CatalogObject> {
    const r = await this.putIfAbsent(object);
    if (r.created) return r.object;
    if (r.object.sha256 === object.sha256 && r.object.size === object.size) return r.object;
    throw new AlreadyExistsError(`${object.name} is already published with different content`);
  }

  async delete(name: string): Promise<void> {
    const current = await this.get(name);
    await this.redis.del(this.keys.object(name));
    await this.redis.zrem(this.keys.objectsByExpiry(), name);
    if (current) await this.releaseBlob(current.blob, name);
  }

  /** Names that reference the blob (as recorded; verify each against its object before relying on it). */
  async referencesOf(sha256: string): Promise<string[]> {
    return this.redis.hkeys(this.keys.blobRefs(sha256));
  }

  /** Names whose `expires` is at or before `nowMs` (oldest first). */
  async expiredNames(nowMs: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.objectsByExpiry(), '-inf', nowMs, 'LIMIT', 0, limit);
  }

  /** Blobs that lost their last reference at or before `cutoffMs`. */
  async orphanedBlobs(cutoffMs: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.blobsOrphaned(), '-inf', cutoffMs, 'LIMIT', 0, limit);
  }

  /**
   * Decides whether an orphaned blob may be deleted: references whose object no longer points at
   * the blob and that were claimed before `staleBeforeMs` are dropped (a publisher that died between
   * claim and publish); then, atomically, the blob is collectable only if no reference remains.
   * A claim made at any moment before that decision keeps the blob; one made after it waits until
   * the caller, having deleted the bytes, calls finishCollection. Returns true when the caller may
   * delete the blob's bytes.
   */
  async collectBlob(sha256: string, staleBeforeMs: number): Promise<boolean> {
    const refs = await this.redis.hgetall(this.keys.blobRefs(sha256));
    let pendingClaims = false;
    for (const [name, claimedAt] of Object.entries(refs)) {
      if ((await this.get(name))?.blob === sha256) continue;
      if (Number(claimedAt) >= staleBeforeMs) pendingClaims = true;
      else await this.releaseBlob(sha256, name);
    }
    const collectable = codeOf('collect3', Collect, await this.run.collect3(this.blobKeys(sha256))) === 'collectable';
    // a claim not yet published, nor stale: look again later; otherwise the blob leaves the queue
    if (!collectable && pendingClaims) await this.redis.zadd(this.keys.blobsOrphaned(), Date.now(), sha256);
    else await this.redis.zrem(this.keys.blobsOrphaned(), sha256);
    return collectable;
  }
}

function encodeField(v: CatalogObject[keyof CatalogObject]): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

function decode(h: Record<string, string>): CatalogObject | undefined {
  if (!h['name']) return undefined;
  return {
    name: h['name'],
    size: Number(h['size']),
    sha256: h['sha256'],
    ...(h['md5'] ? { md5: h['md5'] } : {}),
    ...(h['crc32c'] ? { crc32c: h['crc32c'] } : {}),
    contentType: h['contentType'],
    owner: h['owner'],
    project: h['project'],
    createdAt: h['createdAt'],
    expires: h['expires'] ? h['expires'] : null,
    protocol: h['protocol'],
    blob: h['blob'],
    ...(h['sha512'] ? { sha512: h['sha512'] } : {}),
    ...(h['generation'] ? { generation: Number(h['generation']) } : {}),
    ...(h['metadata'] ? { metadata: JSON.parse(h['metadata']) as Record<string, string> } : {}),
  };
}
