import { createHash } from 'node:crypto';
import { InternalError } from '@ferry/errors';
import type { Redis } from './connections';

/**
 * Ferry keeps its Redis state consistent with Lua scripts, all declared, registered and called one
 * way. How to declare a script:
 *
 * ```ts
 * // 1. its answers: a script that can end in several ways answers a short status string (alone,
 * //    or first in a table), all of them named in one table beside it
 * export const Commit = statuses('ok', 'leaseLost', 'noSession', 'conflict');
 *
 * // 2. the script: its name ends in its number of keys, its signature says the keys (one
 * //    labelled element each), the ARGV and the answer; every key of one call shares one hash
 * //    tag (Redis Cluster): say which next to the script
 * // KEYS: the upload, its lease (the upload's hash tag). ARGV: token, expected, next → Commit.
 * export const commit2 = lua<{
 *   keys: [upload: string, lease: string];
 *   args: [token: string, expected: number, next: number];
 *   result: [status: string];
 * }>('commit2', `
 * if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'leaseLost'} end
 * ...
 * return {'ok'}`);
 *
 * // 3. bound once per connection (in the constructor of the store that owns the keys), called
 * //    keys first, the answer read through its table
 * this.run = bindScripts(redis, { commit2, ... });
 * const outcome = codeOf('commit2', Commit, await this.run.commit2([upload, lease], token, 0, 5));
 * if (outcome === 'conflict') ...
 * ```
 *
 * - The key count is taken from the name, so the two cannot disagree, and the compiler checks that
 *   the name ends in the length of `keys`. A call with another number of keys, or with keys of
 *   different hash tags (a script Redis Cluster would refuse with CROSSSLOT), is an InternalError.
 * - `bindScripts` registers with ioredis `defineCommand` (EVALSHA, falling back to EVAL when the
 *   server does not know the script, as after a restart), once per connection however many stores
 *   bind the same script, on a single server and on a Cluster client alike.
 * - `codeOf` returns the name of an answer's status and turns an answer no name covers into an
 *   InternalError instead of misreading it; call sites compare names, never bare values.
 * - A script with one outcome returns a value (or nothing a caller reads).
 */

/** What a script takes and answers: its KEYS (one labelled element per key), its ARGV and its answer. */
export interface ScriptSignature {
  keys: readonly string[];
  args: readonly (string | number)[];
  result: unknown;
}

/**
 * `S` as a signature: a full signature as is; a bare answer type (`lua<number>(...)`, keys and args
 * untyped) as one answering it.
 */
export type SignatureOf<S> = [S] extends [ScriptSignature] ? S : { keys: readonly string[]; args: readonly (string | number)[]; result: S };

/** A script's name: it ends in its number of keys (checked at compile time when `keys` is a tuple, else when declared). */
export type ScriptName<S> = KeyCountName<SignatureOf<S>['keys']['length']>;
type KeyCountName<L extends number> = number extends L ? string : `${string}${L}`;

export interface LuaScript<S extends ScriptSignature = ScriptSignature> {
  readonly name: string;
  readonly keys: number;
  readonly source: string;
  /** The signature (compile time only). */
  readonly signature?: S;
}

/** Declares a script; `name` ends in its number of keys. */
export function lua<S = unknown>(name: ScriptName<S>, source: string): LuaScript<SignatureOf<S>> {
  const count = /(\d+)$/.exec(name);
  if (!count) throw new TypeError(`Lua script ${name}: the name must end in its number of keys`);
  return { name, keys: Number(count[1]), source };
}

/** A bound script: keys first, then ARGV. */
export type ScriptCall<S extends ScriptSignature> = (keys: S['keys'], ...args: S['args']) => Promise<S['result']>;

export type BoundScripts<T extends Record<string, LuaScript>> = {
  [N in keyof T]: T[N] extends LuaScript<infer S> ? ScriptCall<S> : never;
};

/** The commands each connection has defined (ioredis keeps them per client). */
const defined = new WeakMap<Redis, Set<string>>();

/** Registers `scripts` on `redis` (once per connection) and returns them as typed calls. */
export function bindScripts<T extends Record<string, LuaScript>>(redis: Redis, scripts: T): BoundScripts<T> {
  let commands = defined.get(redis);
  if (!commands) defined.set(redis, (commands = new Set()));
  const bound: Record<string, ScriptCall<ScriptSignature>> = {};
  for (const [key, script] of Object.entries(scripts)) {
    if (key !== script.name) throw new TypeError(`Lua script ${script.name} is bound as ${key}`);
    // Two libs may declare scripts of the same name (sessions and multipart both have a create2):
    // commands are told apart by their source.
    const command = `ferry_${script.name}_${createHash('sha1').update(script.source).digest('hex')}`;
    if (!commands.has(command)) {
      redis.defineCommand(command, { numberOfKeys: script.keys, lua: script.source });
      commands.add(command);
    }
    const call = (redis as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[command];
    bound[key] = (keys, ...args) => {
      const wrong = keys.length !== script.keys ? `takes ${script.keys} keys, not ${keys.length}` : crossSlot(keys);
      if (wrong) return Promise.reject(new InternalError(`Lua script ${script.name} ${wrong}`));
      return call.call(redis, ...keys, ...args);
    };
  }
  return bound as BoundScripts<T>;
}

/**
 * The part of a key Redis Cluster hashes to find its slot: what is between the first `{` and the
 * next `}` when that is not empty, else the whole key.
 */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

function crossSlot(keys: readonly string[]): string | undefined {
  const tags = new Set(keys.map(hashTagOf));
  return tags.size > 1 ? `takes keys of one hash tag, not ${[...tags].map((t) => JSON.stringify(t)).join(', ')}` : undefined;
}

/** A table naming a script's status strings, each by itself: `statuses('ok', 'gone')` is `{ ok: 'ok', gone: 'gone' }`. */
export function statuses<const T extends readonly string[]>(...names: T): { readonly [K in T[number]]: K } {
  return Object.freeze(Object.fromEntries(names.map((n) => [n, n]))) as { readonly [K in T[number]]: K };
}

/**
 * The name of a script's answer in `codes` (a short string or a number, or the first element of a table); an answer
 * no name covers is a bug, reported as such rather than misread.
 */
export function codeOf<C extends Record<string, number | string>>(script: string, codes: C, answer: unknown): keyof C {
  const value = Array.isArray(answer) ? answer[0] : answer;
  for (const [name, code] of Object.entries(codes)) if (code === value) return name as keyof C;
  throw new InternalError(`Lua script ${script} answered ${JSON.stringify(answer)}, which it never should`);
}
