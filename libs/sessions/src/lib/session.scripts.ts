import { lua } from '@ferry/redis';

/**
 * Lua scripts of the session store (declared, bound and called as `lua` in @ferry/redis says).
 * KEYS[1] is always the upload hash and KEYS[2] its lease; both share the upload's hash tag.
 * Lease values are `<holder>:<fence>`; the fence increases with every acquisition, so a writer that
 * lost its lease can never commit, even if it still believes it holds it.
 */

/** ARGV: ttlMs, field, value, ... → 1 created, 0 existed. */
export const create2 = lua(
  'create2',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`,
);

/**
 * ARGV: holder, leaseTtlMs, idleTtlMs, nowMs → {Acquire.acquired, fence, committed} |
 * {Acquire.noSession} (or one being expired) | {Acquire.held, current} | {Acquire.finished}
 * (nothing more can be written).
 */
export const acquireLease2 = lua(
  'acquireLease2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'expiring' then return {-1} end
if state == 'finished' then return {-3} end
local current = redis.call('GET', KEYS[2])
if current then return {-2, current} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, fence, redis.call('HGET', KEYS[1], 'committed')}`,
);

/**
 * ARGV: token, leaseTtlMs, idleTtlMs → 1 renewed, 0 lost. The session's own key lives on with its
 * writer: a leased upload is never idle, however long it goes without a commit.
 */
export const renewLease2 = lua(
  'renewLease2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`,
);

/** ARGV: token → 1 released, 0 not ours. */
export const releaseLease2 = lua(
  'releaseLease2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1`,
);

/**
 * Compare-and-set of the committed size, under the lease.
 * ARGV: token, expected, next, nowMs, idleTtlMs, leaseTtlMs → 1 ok, -1 lease lost, -2 no session, -3 conflict.
 */
export const commit2 = lua(
  'commit2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local committed = redis.call('HGET', KEYS[1], 'committed')
if not committed then return -2 end
if tonumber(committed) ~= tonumber(ARGV[2]) then return -3 end
redis.call('HSET', KEYS[1], 'committed', ARGV[3], 'updatedAt', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1`,
);

/** Sets fields under the lease. ARGV: token, nowMs, field, value, ... → 1 ok, -1 lease lost, -2 no session. */
export const update2 = lua(
  'update2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[2], unpack(ARGV, 3))
return 1`,
);

/**
 * Ends the session under the lease: deletes it, or (ARGV[2] given) keeps it as a record of the
 * finished upload for ARGV[3] ms. ARGV: token[, result, retainMs] → 1 ok, -1 lease lost.
 */
export const finish2 = lua(
  'finish2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'finished', 'result', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1`,
);

/**
 * First step of expiring a session idle since before the cutoff and not leased: marks it
 * `expiring`, which no writer can lease and no one sees (its staged bytes are deleted next, then
 * the session by endExpiry2). Never deleting the session first is what keeps a client that
 * recreates the upload meanwhile (ByteStream names its upload) from writing into staging that is
 * about to be deleted. ARGV: cutoffMs → {BeginExpiry.expiring} (now, or by an earlier run that
 * stopped half way) | {BeginExpiry.gone} already | {BeginExpiry.leased} | {BeginExpiry.active, updatedAt}.
 */
export const beginExpiry2 = lua(
  'beginExpiry2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
if redis.call('HGET', KEYS[1], 'state') == 'expiring' then return {1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1} end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updatedAt') or '0')
if updated > tonumber(ARGV[1]) then return {-2, updated} end
redis.call('HSET', KEYS[1], 'state', 'expiring')
return {1}`,
);

/** Last step of an expiry, once the staged bytes are gone: deletes the session. → 1 deleted, 0 not expiring. */
export const endExpiry2 = lua(
  'endExpiry2',
  `
if redis.call('HGET', KEYS[1], 'state') ~= 'expiring' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1`,
);

/** The answers of the scripts above that can end in more than one way. */
export const Acquire = { acquired: 1, noSession: -1, held: -2, finished: -3 } as const;
export const Renew = { renewed: 1, lost: 0 } as const;
/** commit2, update2 and finish2. */
export const UnderLease = { ok: 1, leaseLost: -1, noSession: -2, conflict: -3 } as const;
export const BeginExpiry = { expiring: 1, gone: 0, leased: -1, active: -2 } as const;
