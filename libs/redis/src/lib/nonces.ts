import type { NonceStore } from '@ferry/auth';
import type { Redis } from './connections';
import type { RedisKeys } from './keys';

/** Hawk nonces in Redis (SET NX with expiry): a replay is refused by every replica. */
export class RedisNonceStore implements NonceStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(this.keys.hawkNonce(key), '1', 'EX', ttlSeconds, 'NX')) === 'OK';
  }
}
