import { InternalError } from '@ferry/errors';
import type { Redis } from './connections';

/**
 * Ferry keeps its Redis state consistent with Lua scripts, all declared, registered and called one
 * way:
 *
 * - **Declared once** with `lua(name, source)`, in the lib that owns the keys. The name ends in its
 *   number of keys (`commit2` reads KEYS[1] and KEYS[2]); the count is taken from the name, so the
 *   two cannot disagree. Every key of one call shares one hash tag, so the script runs on Redis
 *   Cluster too; say which next to the script.
 * - **Answers with named codes.** A script that can end in several ways returns a short code (a
 *   number, or a table whose first element is one) that its lib names in a table next to it
 *   (`const Commit = { ok: 1, leaseLost: -1, ... } as const`); callers compare with the names,
 *   never with bare numbers, and `codeOf` turns an answer no name covers into an InternalError.
 * - **Bound per connection** with `bindScripts(redis, scripts)`, idempotently (ioredis
 *   `defineCommand`: EVALSHA, with EVAL when the server does not know the script yet, as after a
 *   restart), and **called keys first**: `run.commit2([upload, lease], token, expected, next)`.
 */
export interface LuaScript<R = unknown> {
  readonly name: string;
  readonly keys: number;
  readonly source: string;
  /** The answer's type (compile time only). */
  readonly answer?: R;
}

/** Declares a script; `name` ends in its number of keys. */
export function lua<R = unknown>(name: string, source: string): LuaScript<R> {
  const count = /(\d+)$/.exec(name);
  if (!count) throw new TypeError(`Lua script ${name}: the name must end in its number of keys`);
  return { name, keys: Number(count[1]), source };
}

export type BoundScripts<T extends Record<string, LuaScript>> = {
  [N in keyof T]: (keys: readonly string[], ...args: (string | number)[]) => Promise<T[N] extends LuaScript<infer R> ? R : never>;
};

/** Registers `scripts` on `redis` (once per connection) and returns them as typed calls. */
export function bindScripts<T extends Record<string, LuaScript>>(redis: Redis, scripts: T): BoundScripts<T> {
  const bound: Record<string, (keys: readonly string[], ...args: (string | number)[]) => Promise<unknown>> = {};
  for (const [key, script] of Object.entries(scripts)) {
    if (key !== script.name) throw new TypeError(`Lua script ${script.name} is bound as ${key}`);
    const command = `ferry_${script.name}_${fingerprint(script.source)}`;
    if (!(command in redis)) redis.defineCommand(command, { numberOfKeys: script.keys, lua: script.source });
    const call = (redis as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[command];
    bound[key] = (keys, ...args) => {
      if (keys.length !== script.keys) throw new TypeError(`Lua script ${script.name} takes ${script.keys} keys, not ${keys.length}`);
      return call.call(redis, ...keys, ...args);
    };
  }
  return bound as BoundScripts<T>;
}

/**
 * The name of a script's answer in `codes` (a number or a short string, or the first element of a table); an answer
 * no name covers is a bug, reported as such rather than misread.
 */
export function codeOf<C extends Record<string, number | string>>(script: string, codes: C, answer: unknown): keyof C {
  const value = Array.isArray(answer) ? answer[0] : answer;
  for (const [name, code] of Object.entries(codes)) if (code === value) return name as keyof C;
  throw new InternalError(`Lua script ${script} answered ${JSON.stringify(answer)}, which it never should`);
}

/** Two libs may declare scripts of the same name: commands are told apart by their source. */
function fingerprint(source: string): string {
  let h = 2166136261;
  for (let i = 0; i < source.length; i++) h = Math.imul(h ^ source.charCodeAt(i), 16777619);
  return (h >>> 0).toString(36);
}
