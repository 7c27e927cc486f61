import Redis, { RedisOptions } from 'ioredis';

/**
 * Redis connections with the settings each role needs:
 * - `command`: request/response traffic of the apps; retries a few times, then fails the request
 *   so a caller sees UNAVAILABLE instead of hanging.
 * - `worker`: BullMQ workers block on Redis; BullMQ requires `maxRetriesPerRequest: null`.
 * - `producer`: BullMQ queues that add jobs; fail fast when Redis is down instead of queueing offline.
 */
export type RedisRole = 'command' | 'worker' | 'producer';

export function redisOptions(role: RedisRole): RedisOptions {
  const base: RedisOptions = {
    connectionName: `ferry-${role}`,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  };
  switch (role) {
    case 'command':
      return { ...base, maxRetriesPerRequest: 3, enableOfflineQueue: true };
    case 'worker':
      return { ...base, maxRetriesPerRequest: null, enableReadyCheck: false };
    case 'producer':
      return { ...base, maxRetriesPerRequest: 3, enableOfflineQueue: false };
  }
}

export function createRedis(url: string, role: RedisRole): Redis {
  return new Redis(url, redisOptions(role));
}

/** Resolves once the connection is ready, or rejects after `timeoutMs`. */
export async function waitForRedis(redis: Redis, timeoutMs = 5000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not reachable within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}
