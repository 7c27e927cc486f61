import { lua, statuses } from '@ferry/redis';

/**
 * Lua scripts of the session store (declared, bound and called as `lua` in @ferry/redis says).
 * KEYS[1] is always the upload hash and KEYS[2] its lease; both share the upload's hash tag
 * (`up:{<uploadId>}`), so every script runs within one slot on Redis Cluster.
 * Lease values are `<holder>:<fence>`; the fence increases with every acquisition, so a writer that
 * lost its lease can never commit, even if it still believes it holds it.
 */

/** The keys of every session script: the upload hash, its lease. */
type SessionKeys = [upload: string, lease: string];
/** HSET's field, value, ... */
type Fields = (string | number)[];

export const Create = statuses('created', 'existed');
/** ARGV: ttlMs, field, value, ... → Create. */
export const create2 = lua<{ keys: SessionKeys; args: [ttlMs: number, ...fields: Fields]; result: string }>(
  'create2',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 'existed' end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 'created'`,
);

export const Acquire = statuses('acquired', 'noSession', 'held', 'finished');
/**
 * ARGV: holder, leaseTtlMs, idleTtlMs, nowMs → {acquired, fence, committed} | {noSession} (or one
 * being expired) | {held, current lease} | {finished} (nothing more can be written).
 */
export const acquireLease2 = lua<{
  keys: SessionKeys;
  args: [holder: string, leaseTtlMs: number, idleTtlMs: number, nowMs: number];
  result: [status: string, fenceOrHolder?: number | string, committed?: string];
}>(
  'acquireLease2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noSession'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'expiring' then return {'noSession'} end
if state == 'finished' then return {'finished'} end
local current = redis.call('GET', KEYS[2])
if current then return {'held', current} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'acquired', fence, redis.call('HGET', KEYS[1], 'committed')}`,
);

export const Renew = statuses('renewed', 'lost');
/**
 * ARGV: token, leaseTtlMs, idleTtlMs → Renew. The session's own key lives on with its writer: a
 * leased upload is never idle, however long it goes without a commit.
 */
export const renewLease2 = lua<{ keys: SessionKeys; args: [token: string, leaseTtlMs: number, idleTtlMs: number]; result: string }>(
  'renewLease2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 'renewed'`,
);

export const Release = statuses('released', 'notHeld');
/** ARGV: token → Release (notHeld: the lease is not, or no longer, this token's). */
export const releaseLease2 = lua<{ keys: SessionKeys; args: [token: string]; result: string }>(
  'releaseLease2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'notHeld' end
redis.call('DEL', KEYS[2])
return 'released'`,
);

export const Commit = statuses('ok', 'leaseLost', 'noSession', 'conflict');
/**
 * Compare-and-set of the committed size, under the lease.
 * ARGV: token, expected, next, nowMs, idleTtlMs, leaseTtlMs → Commit.
 */
export const commit2 = lua<{
  keys: SessionKeys;
  args: [token: string, expected: number, next: number, nowMs: number, idleTtlMs: number, leaseTtlMs: number];
  result: string;
}>(
  'commit2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'leaseLost' end
local committed = redis.call('HGET', KEYS[1], 'committed')
if not committed then return 'noSession' end
if tonumber(committed) ~= tonumber(ARGV[2]) then return 'conflict' end
redis.call('HSET', KEYS[1], 'committed', ARGV[3], 'updatedAt', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 'ok'`,
);

export const Update = statuses('ok', 'leaseLost', 'noSession');
/** Sets fields under the lease. ARGV: token, nowMs, field, value, ... → Update. */
export const update2 = lua<{ keys: SessionKeys; args: [token: string, nowMs: number, ...fields: Fields]; result: string }>(
  'update2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'leaseLost' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'noSession' end
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[2], unpack(ARGV, 3))
return 'ok'`,
);

export const Finish = statuses('ok', 'leaseLost');
/**
 * Ends the session under the lease: deletes it, or (ARGV[2] given) keeps it as a record of the
 * finished upload for ARGV[3] ms. ARGV: token[, result, retainMs] → Finish.
 */
export const finish2 = lua<{
  keys: SessionKeys;
  args: [token: string] | [token: string, result: string, retainMs: number];
  result: string;
}>(
  'finish2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'leaseLost' end
if ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'finished', 'result', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 'ok'`,
);

export const BeginExpiry = statuses('expiring', 'gone', 'leased', 'active');
/**
 * First step of expiring a session idle since before the cutoff and not leased: marks it
 * `expiring`, which no writer can lease and no one sees (its staged bytes are deleted next, then
 * the session by endExpiry2). Never deleting the session first is what keeps a client that
 * recreates the upload meanwhile (ByteStream names its upload) from writing into staging that is
 * about to be deleted. ARGV: cutoffMs → {expiring} (now, or by an earlier run that stopped half
 * way) | {gone} already | {leased} | {active, updatedAt}.
 */
export const beginExpiry2 = lua<{ keys: SessionKeys; args: [cutoffMs: number]; result: [status: string, updatedAt?: number] }>(
  'beginExpiry2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('HGET', KEYS[1], 'state') == 'expiring' then return {'expiring'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'leased'} end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updatedAt') or '0')
if updated > tonumber(ARGV[1]) then return {'active', updated} end
redis.call('HSET', KEYS[1], 'state', 'expiring')
return {'expiring'}`,
);

export const EndExpiry = statuses('deleted', 'notExpiring');
/** Last step of an expiry, once the staged bytes are gone: deletes the session. → EndExpiry. */
export const endExpiry2 = lua<{ keys: SessionKeys; args: []; result: string }>(
  'endExpiry2',
  `
if redis.call('HGET', KEYS[1], 'state') ~= 'expiring' then return 'notExpiring' end
redis.call('DEL', KEYS[1], KEYS[2])
return 'deleted'`,
);
