import { AlreadyExistsError } from '@ferry/errors';
import { Redis, RedisKeys } from '@ferry/redis';

/**
 * A published object: immutable content (a content-addressed blob) under a name.
 * Names by protocol: ByteStream resource name as is; GCS `<bucket>/<object>`; multipart file
 * handles `fileHandle/<id>`; Taskcluster objects by their own name.
 */
export interface CatalogObject {
  name: string;
  size: number;
  sha256: string;
  md5: string;
  /** crc32c as 8 hex digits (big-endian), as GCS reports it in base64 of the same bytes. */
  crc32c: string;
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
}

const FIELDS: (keyof CatalogObject)[] = [
  'name', 'size', 'sha256', 'md5', 'crc32c', 'contentType', 'owner', 'project', 'createdAt', 'expires', 'protocol', 'blob', 'sha512',
];

/** ARGV: field, value, ... → nil if created, else the existing hash as a flat list. */
const putIfAbsent1 = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGETALL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV))
return nil`;

export type PutResult = { created: true; object: CatalogObject } | { created: false; object: CatalogObject };

/**
 * The catalog of published objects, in Redis: one hash per object under the object's hash tag, and
 * per blob the set of names referencing it (written before the object, so a blob is never without
 * its reference while an object points at it; garbage collection double-checks references).
 */
export class Catalog {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    if (!('ferryCatalogPut' in redis)) redis.defineCommand('ferryCatalogPut', { numberOfKeys: 1, lua: putIfAbsent1 });
  }

  async get(name: string): Promise<CatalogObject | undefined> {
    return decode(await this.redis.hgetall(this.keys.object(name)));
  }

  /** Publishes `object` unless the name is taken; returns what the name holds afterwards. */
  async putIfAbsent(object: CatalogObject): Promise<PutResult> {
    await this.redis.sadd(this.keys.blobRefs(object.blob), object.name);
    const args = FIELDS.flatMap((f) => [f, encodeField(object[f])]);
    const put = (this.redis as unknown as { ferryCatalogPut(key: string, ...a: string[]): Promise<string[] | null> })
      .ferryCatalogPut;
    const existing = await put.call(this.redis, this.keys.object(object.name), ...args);
    if (existing === null) return { created: true, object };
    const current = decode(pairs(existing));
    if (!current) throw new Error('catalog entry disappeared');
    if (current.blob !== object.blob) await this.redis.srem(this.keys.blobRefs(object.blob), object.name);
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
    if (current) await this.redis.srem(this.keys.blobRefs(current.blob), name);
  }

  /** Names that reference the blob (as recorded; verify each against its object before relying on it). */
  async referencesOf(sha256: string): Promise<string[]> {
    return this.redis.smembers(this.keys.blobRefs(sha256));
  }
}

function encodeField(v: CatalogObject[keyof CatalogObject]): string {
  return v === null || v === undefined ? '' : String(v);
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
    md5: h['md5'],
    crc32c: h['crc32c'],
    contentType: h['contentType'],
    owner: h['owner'],
    project: h['project'],
    createdAt: h['createdAt'],
    expires: h['expires'] ? h['expires'] : null,
    protocol: h['protocol'],
    blob: h['blob'],
    ...(h['sha512'] ? { sha512: h['sha512'] } : {}),
  };
}
