import type { ActionResult, ActionResult__Output } from '@ferry/protocol';
import { messageCodec } from '@ferry/protocol';
import type { Redis, RedisKeys } from '@ferry/redis';

/** The encoded size above which an action result is refused (results are small; outputs live in the CAS). */
export const MAX_ACTION_RESULT_BYTES = 1024 * 1024;

/**
 * The REAPI action cache in Redis: one key per (instance, action digest) holding the encoded
 * ActionResult, forgotten after `ttlMs` without a read or a write (every hit renews it). Any
 * replica serves any entry; each key has its own hash tag.
 */
export class ActionCacheStore {
  private readonly codec = messageCodec<ActionResult, ActionResult__Output>('build.bazel.remote.execution.v2.ActionResult');

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly ttlMs: number,
  ) {}

  /** Encodes a result as stored (and as a client will get it back). */
  encode(result: ActionResult): Buffer {
    return this.codec.encode(result);
  }

  async get(instance: string, hash: string, size: number): Promise<ActionResult__Output | undefined> {
    const key = this.keys.actionResult(instance, hash, size);
    const bytes = await this.redis.getBuffer(key);
    if (!bytes) return undefined;
    await this.redis.pexpire(key, this.ttlMs);
    return this.codec.decode(bytes);
  }

  async put(instance: string, hash: string, size: number, encoded: Buffer): Promise<void> {
    await this.redis.set(this.keys.actionResult(instance, hash, size), encoded, 'PX', this.ttlMs);
  }

  async delete(instance: string, hash: string, size: number): Promise<void> {
    await this.redis.del(this.keys.actionResult(instance, hash, size));
  }
}
