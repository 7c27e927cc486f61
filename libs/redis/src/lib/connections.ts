import IORedis, { Cluster, ClusterOptions, RedisOptions } from 'ioredis';

/**
 * A connection to Redis: one server, or a Redis Cluster (`redis+cluster://host:port,host:port`).
 * Both speak the same command API; every multi-key command and script of Ferry stays within one
 * hash tag, so it works on either.
 */
export type Redis = IORedis | Cluster;

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

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)\/?$/;

/** The seed nodes and credentials of a `redis+cluster://` (or `rediss+cluster://`) URL, or undefined for a plain URL. */
export function parseClusterUrl(
  url: string,
): { nodes: { host: string; port: number }[]; tls: boolean; username?: string; password?: string } | undefined {
  const m = CLUSTER_URL.exec(url);
  if (!m) return undefined;
  const nodes = m[4].split(',').map((hostPort) => {
    const at = hostPort.lastIndexOf(':');
    const host = at > 0 ? hostPort.slice(0, at).replace(/^\[|\]$/g, '') : hostPort;
    const port = at > 0 ? Number(hostPort.slice(at + 1)) : 6379;
    if (!host || !Number.isInteger(port) || port <= 0 || port > 65535)
      throw new Error(`bad cluster node ${JSON.stringify(hostPort)} in ${url}`);
    return { host, port };
  });
  return {
    nodes,
    tls: m[1] === 'rediss',
    ...(m[2] ? { username: decodeURIComponent(m[2]) } : {}),
    ...(m[3] ? { password: decodeURIComponent(m[3]) } : {}),
  };
}

/** A connection for `role` to the Redis (or Redis Cluster) at `url`. */
export function createRedis(url: string, role: RedisRole): Redis {
  const cluster = parseClusterUrl(url);
  if (!cluster) return new IORedis(url, redisOptions(role));
  // A cluster queues commands while it is down and never fails them: commands fail fast instead
  // (UNAVAILABLE to clients, who retry), and apps wait for `ready` at boot (waitForRedis).
  const { retryStrategy, enableOfflineQueue: _queue, ...perNode } = redisOptions(role);
  const options: ClusterOptions = {
    redisOptions: {
      ...perNode,
      ...(cluster.username ? { username: cluster.username } : {}),
      ...(cluster.password ? { password: cluster.password } : {}),
      ...(cluster.tls ? { tls: {} } : {}),
    },
    clusterRetryStrategy: retryStrategy,
    enableOfflineQueue: role === 'worker',
  };
  return new Cluster(cluster.nodes, options);
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
