import { InvalidArgumentError } from '@ferry/errors';
import type { ActionResult, ActionResult__Output } from '@ferry/protocol';
import { messageCodec } from '@ferry/protocol';
import type { Redis, RedisKeys } from '@ferry/redis';
import { type BoundedCache, cacheMetrics } from '@ferry/cache';

/** The encoded size above which an action result is refused (results are small; outputs live in the CAS). */
export const MAX_ACTION_RESULT_BYTES = 1024 * 1024;

/**
 * The REAPI action cache in Redis: one key per (instance, action hash) holding the encoded
 * ActionResult, forgotten after `ttlMs` without a read or a write (every hit renews it). The gRPC
 * face and Bazel's HTTP cache (`/ac/{hash}`, which names an action by its hash alone) read and
 * write the same entries. Any replica serves any entry; each key has its own hash tag.
 */
export class ActionCacheStore {
  private readonly codec = messageCodec<ActionResult, ActionResult__Output>('build.bazel.remote.execution.v2.ActionResult');

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly ttlMs: number,
    /** The bounded cache, which counts every result held (undefined: unbounded). */
    private readonly cache?: BoundedCache,
  ) {}

  /** Encodes a result as stored (and as a client will get it back). */
  encode(result: ActionResult): Buffer {
    return this.codec.encode(result);
  }

  /** Decodes an encoded ActionResult (a client's); INVALID_ARGUMENT when it is not one. */
  decode(bytes: Buffer): ActionResult__Output {
    try {
      return this.codec.decode(bytes);
    } catch (err) {
      throw new InvalidArgumentError(`not a serialized build.bazel.remote.execution.v2.ActionResult: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** The stored encoding of the action's result (renewing its lifetime), or undefined. */
  async getEncoded(instance: string, hash: string): Promise<Buffer | undefined> {
    const key = this.keys.actionResult(instance, hash);
    const bytes = await this.redis.getBuffer(key);
    if (!bytes) {
      cacheMetrics.misses.inc({ kind: 'action' });
      return undefined;
    }
    cacheMetrics.hits.inc({ kind: 'action' });
    await this.redis.pexpire(key, this.ttlMs);
    await this.cache?.index.touchAction(key, bytes.length);
    return bytes;
  }

  async get(instance: string, hash: string): Promise<ActionResult__Output | undefined> {
    const bytes = await this.getEncoded(instance, hash);
    return bytes && this.codec.decode(bytes);
  }

  async put(instance: string, hash: string, encoded: Buffer): Promise<void> {
    const key = this.keys.actionResult(instance, hash);
    await this.redis.set(key, encoded, 'PX', this.ttlMs);
    await this.cache?.index.touchAction(key, encoded.length);
  }

  async delete(instance: string, hash: string): Promise<void> {
    await this.redis.del(this.keys.actionResult(instance, hash));
  }
}
