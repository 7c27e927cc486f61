import { InternalError } from '@ferry/errors';
import { TestRedis, startTestRedis } from '@ferry/testing';
import { Redis, createRedis, waitForRedis } from './connections';
import { bindScripts, codeOf, lua } from './lua';

const Swap = { swapped: 1, differs: 0 } as const;
/** KEYS[1] a string. ARGV: expected, next → {Swap.swapped} | {Swap.differs, current}. */
const swap1 = lua<[number, string?]>(
  'swap1',
  `
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return {0, current} end
redis.call('SET', KEYS[1], ARGV[2])
return {1}`,
);

describe('Lua scripts (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis);
  });

  afterAll(async () => {
    await redis.quit();
    await server.stop();
  });

  it('binds scripts once per connection and calls them keys first, with typed answers', async () => {
    const run = bindScripts(redis, { swap1 });
    const again = bindScripts(redis, { swap1 }); // a second store on the same connection
    const key = `${server.prefix}:lua:{t}`;
    expect(codeOf('swap1', Swap, await run.swap1([key], '', 'a'))).toBe('swapped');
    const answer = await again.swap1([key], '', 'b');
    expect(codeOf('swap1', Swap, answer)).toBe('differs');
    expect(answer[1]).toBe('a');
    // after a restart the server forgets scripts: EVALSHA falls back to EVAL
    await redis.script('FLUSH');
    expect(codeOf('swap1', Swap, await run.swap1([key], 'a', 'c'))).toBe('swapped');
  });

  it('takes the number of keys from the name, and refuses calls with another number', async () => {
    expect(swap1.keys).toBe(1);
    expect(() => lua('noCount', 'return 1')).toThrow(/must end in its number of keys/);
    const run = bindScripts(redis, { swap1 });
    expect(() => run.swap1(['a', 'b'], 'x', 'y')).toThrow(/takes 1 keys, not 2/);
    expect(() => bindScripts(redis, { other1: swap1 })).toThrow(/is bound as other1/);
  });

  it('reports an answer no code names as an internal error, never misreads it', () => {
    expect(() => codeOf('swap1', Swap, [7])).toThrow(InternalError);
    expect(() => codeOf('swap1', Swap, 'OK')).toThrow(/answered "OK", which it never should/);
  });
});
