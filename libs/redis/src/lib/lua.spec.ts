import { createHash } from 'node:crypto';
import { Cluster } from 'ioredis';
import { InternalError } from '@ferry/errors';
import { TestRedis, startTestRedis, startTestRedisCluster } from '@ferry/testing';
import { Redis, createRedis, waitForRedis } from './connections';
import { bindScripts, codeOf, hashTagOf, lua, statuses } from './lua';

const Swap = statuses('swapped', 'differs');
/** KEYS[1] a string. ARGV: expected, next → {swapped} | {differs, current}. */
const swap1 = lua<{ keys: [value: string]; args: [expected: string, next: string]; result: [status: string, current?: string] }>(
  'swap1',
  `
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return {'differs', current} end
redis.call('SET', KEYS[1], ARGV[2])
return {'swapped'}`,
);

/** KEYS: a source and a target of one hash tag → the value moved (a script with one outcome). */
const move2 = lua<{ keys: [from: string, to: string]; args: []; result: string | null }>(
  'move2',
  `
local v = redis.call('GET', KEYS[1])
if not v then return false end
redis.call('SET', KEYS[2], v)
redis.call('DEL', KEYS[1])
return v`,
);

/** A script with a bug: it answers a status its table does not name. */
const Toggle = statuses('on', 'off');
const toggle1 = lua<{ keys: [flag: string]; args: []; result: string }>(
  'toggle1',
  `
if redis.call('GET', KEYS[1]) == 'on' then return 'off' end
return 'maybe'`,
);

/** Forgets every script on every node, as a restart does. */
async function flushScripts(redis: Redis): Promise<void> {
  const servers = redis instanceof Cluster ? redis.nodes('all') : [redis];
  await Promise.all(servers.map((s) => s.script('FLUSH')));
}

describe.each([
  ['a single server', startTestRedis],
  ['a six-node Redis Cluster', startTestRedisCluster],
])('Lua scripts on %s (real Redis)', (_, start) => {
  let server: TestRedis;
  let redis: Redis;
  let key: (name: string, tag: string) => string;

  beforeAll(async () => {
    server = await start();
    redis = createRedis(server.url, 'command');
    await waitForRedis(redis, 15_000);
    key = (name, tag) => `${server.prefix}:lua:{${tag}}:${name}`;
  }, 60_000);

  afterAll(async () => {
    await redis.quit();
    await server.stop();
  });

  it('registers a script once per connection, however many stores bind it, and calls it keys first with a typed answer', async () => {
    const define = jest.spyOn(redis, 'defineCommand');
    try {
      const run = bindScripts(redis, { swap1, move2 });
      const again = bindScripts(redis, { swap1 }); // a second store on the same connection
      expect(define).toHaveBeenCalledTimes(2); // swap1 and move2, not swap1 twice
      expect(define.mock.calls[0][1]).toEqual({ numberOfKeys: 1, lua: swap1.source });

      const k = key('swap', 'a');
      expect(codeOf('swap1', Swap, await run.swap1([k], '', 'x'))).toBe('swapped');
      const answer = await again.swap1([k], '', 'y');
      expect(codeOf('swap1', Swap, answer)).toBe('differs');
      expect(answer[1]).toBe('x');
      expect(await redis.get(k)).toBe('x');
      expect(await run.move2([k, key('moved', 'a')])).toBe('x');
      expect(await redis.get(key('moved', 'a'))).toBe('x');
      expect(await run.move2([k, key('moved', 'a')])).toBeNull();
    } finally {
      define.mockRestore();
    }
  });

  it('runs each call on the node of its keys, and again after the servers forgot the script (EVALSHA, then EVAL)', async () => {
    const run = bindScripts(redis, { swap1 });
    // forty tags: on the cluster they spread over all three masters
    const keys = Array.from({ length: 40 }, (_, i) => key('spread', `s${i}`));
    const first = await Promise.all(keys.map((k) => run.swap1([k], '', 'one')));
    expect(first.map((a) => codeOf('swap1', Swap, a))).toEqual(keys.map(() => 'swapped'));
    const sha = createHash('sha1').update(swap1.source).digest('hex');
    const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
    if (redis instanceof Cluster) expect(servers).toHaveLength(3);
    for (const s of servers) expect(await s.script('EXISTS', sha)).toEqual([1]);

    await flushScripts(redis);
    for (const s of servers) expect(await s.script('EXISTS', sha)).toEqual([0]);
    const second = await Promise.all(keys.map((k) => run.swap1([k], 'one', 'two')));
    expect(second.map((a) => codeOf('swap1', Swap, a))).toEqual(keys.map(() => 'swapped'));
    expect(await Promise.all(keys.map((k) => redis.get(k)))).toEqual(keys.map(() => 'two'));
  });

  it('tells apart scripts of the same name from two libs (by their source)', async () => {
    const other = lua<{ keys: [value: string]; args: [expected: string, next: string]; result: [status: string] }>(
      'swap1',
      `return {'differs'}`,
    );
    const mine = bindScripts(redis, { swap1 });
    const theirs = bindScripts(redis, { swap1: other });
    const k = key('twins', 'b');
    expect(codeOf('swap1', Swap, await theirs.swap1([k], '', 'x'))).toBe('differs');
    expect(codeOf('swap1', Swap, await mine.swap1([k], '', 'x'))).toBe('swapped');
  });

  it('refuses, as an internal error, a call with another number of keys or keys of two hash tags', async () => {
    const run = bindScripts(redis, { swap1, move2 });
    const wrongCount = run.swap1([key('a', 'c'), key('b', 'c')] as unknown as [string], '', 'x');
    await expect(wrongCount).rejects.toThrow(InternalError);
    await expect(wrongCount).rejects.toThrow('Lua script swap1 takes 1 keys, not 2');
    // on a single server this would run (and break on a cluster): refused everywhere
    const crossSlot = run.move2([key('from', 'c'), key('to', 'd')]);
    await expect(crossSlot).rejects.toThrow(InternalError);
    await expect(crossSlot).rejects.toThrow('Lua script move2 takes keys of one hash tag, not "c", "d"');
    expect(await redis.exists(key('to', 'd'))).toBe(0);
  });

  it('reads an answer no status names as an internal error, never as another one', async () => {
    const run = bindScripts(redis, { toggle1 });
    const k = key('toggle', 'e');
    await redis.set(k, 'on');
    expect(codeOf('toggle1', Toggle, await run.toggle1([k]))).toBe('off');
    await redis.set(k, 'off');
    const answer = await run.toggle1([k]);
    expect(answer).toBe('maybe');
    expect(() => codeOf('toggle1', Toggle, answer)).toThrow(InternalError);
    expect(() => codeOf('toggle1', Toggle, answer)).toThrow('Lua script toggle1 answered "maybe", which it never should');
  });
});

describe('Lua script declarations', () => {
  it('take the number of keys from the name', () => {
    expect(swap1.keys).toBe(1);
    expect(move2.keys).toBe(2);
    expect(lua('collect13', 'return 1').keys).toBe(13);
    expect(() => lua('noCount', 'return 1')).toThrow(/must end in its number of keys/);
  });

  it('are bound under their own name', () => {
    // (nothing is sent: defineCommand only records the script)
    const redis = createRedis('redis://127.0.0.1:1', 'command');
    redis.on('error', () => undefined);
    try {
      expect(() => bindScripts(redis, { other1: swap1 })).toThrow(/is bound as other1/);
    } finally {
      redis.disconnect();
    }
  });

  it('are typed: the name ends in the number of keys, calls take the declared keys and arguments', () => {
    // compile-time checks (tsc -p tsconfig.check.json): each line below must be an error
    // @ts-expect-error two keys declared, the name says 1
    lua<{ keys: [a: string, b: string]; args: []; result: number }>('wrong1', 'return 1');
    type Run = ReturnType<typeof bindScripts<{ swap1: typeof swap1 }>>;
    const calls = (r: Run) => [
      // @ts-expect-error one key, not two
      r.swap1(['a', 'b'], '', 'x'),
      // @ts-expect-error an argument missing
      r.swap1(['a'], ''),
      // @ts-expect-error a number where a string is declared
      r.swap1(['a'], 1, 'x'),
    ];
    expect(typeof calls).toBe('function');
    // and the answer is typed: [status, current?]
    const answer = async (r: Run): Promise<string | undefined> => (await r.swap1(['a'], '', 'x'))[1];
    expect(typeof answer).toBe('function');
  });

  it('find the hash tag of a key as Redis Cluster does', () => {
    expect(hashTagOf('ferry:up:{abc}:lease')).toBe('abc');
    expect(hashTagOf('{ferry:bull}:q:1')).toBe('ferry:bull');
    expect(hashTagOf('a{b}c{d}')).toBe('b');
    expect(hashTagOf('plain')).toBe('plain');
    expect(hashTagOf('x{}y{z}')).toBe('x{}y{z}'); // an empty tag: the whole key is hashed
    expect(hashTagOf('x}{y}')).toBe('y');
    expect(hashTagOf('x{y')).toBe('x{y');
  });

  it('name statuses by themselves', () => {
    expect(Swap).toEqual({ swapped: 'swapped', differs: 'differs' });
    expect(Object.isFrozen(Swap)).toBe(true);
  });
});
