import { Cluster } from 'ioredis';
import { createRedis, parseClusterUrl } from './connections';

describe('Redis connection URLs', () => {
  it('reads a cluster URL: seed nodes, credentials, TLS', () => {
    expect(parseClusterUrl('redis://127.0.0.1:6379')).toBeUndefined();
    expect(parseClusterUrl('redis+cluster://10.0.0.1:7000,10.0.0.2:7001,redis-3')).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: 'redis-3', port: 6379 },
      ],
      tls: false,
    });
    expect(parseClusterUrl('rediss+cluster://user:p%40ss@[::1]:7000/')).toEqual({
      nodes: [{ host: '::1', port: 7000 }],
      tls: true,
      username: 'user',
      password: 'p@ss',
    });
    expect(() => parseClusterUrl('redis+cluster://host:0')).toThrow(/bad cluster node/);
  });

  it('makes a Cluster client for a cluster URL (lazily: nothing is contacted here)', () => {
    const redis = createRedis('redis+cluster://127.0.0.1:1', 'command');
    expect(redis).toBeInstanceOf(Cluster);
    redis.on('error', () => undefined);
    redis.disconnect();
  });
});
