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

export const Acquire = statuses('acquired', 'noSession', 'held', 'finished', 'publishing');
/**
 * ARGV: holder, leaseTtlMs, idleTtlMs, nowMs, policy, match (JSON: attributes that must have
 * these values) → {acquired, fence, committed, writtenBy, deadline} | {noSession} (or one being
 * expired, past its deadline, or whose attributes do not match) | {held, current lease} |
 * {finished} (nothing more can be written) | {publishing} (takeover refused: a finisher holds it).
 * Policy `refuse`: a lease held by someone else is {held}. Policy `takeover`: the new writer takes
 * the lease from any writer (an object PUT: the newest wins; the one it replaces loses its lease,
 * so it can record nothing) and replaces the content, so the committed size and recorded digests
 * are forgotten at once and the state is open again; only a finisher holding the lease of a
 * publishing session is not taken over. Policy `publish`: as `refuse`, and the session is
 * publishing from the same step (a finisher: no takeover can slip in before it says so). Policy
 * `request`: as `refuse`, and a held lease is asked to let go (`releaseAsked` = the holder's lease
 * value, which its holder polls: tus's lock release, a stale PATCH stops for a resuming client).
 * `writtenBy` is the fence of the writer whose bytes the
 * committed size counted before ('' if none): a takeover drops that writer's staging.
 */
export const acquireLease2 = lua<{
  keys: SessionKeys;
  args: [
    holder: string,
    leaseTtlMs: number,
    idleTtlMs: number,
    nowMs: number,
    policy: 'refuse' | 'takeover' | 'publish' | 'request',
    match: string,
  ];
  result: [status: string, fenceOrHolder?: number | string, committed?: string, writtenBy?: string, deadline?: string];
}>(
  'acquireLease2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noSession'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'expiring' then return {'noSession'} end
local deadline = redis.call('HGET', KEYS[1], 'deadline') or ''
if deadline ~= '' and tonumber(deadline) <= tonumber(ARGV[4]) then return {'noSession'} end
if state == 'finished' then return {'finished'} end
local attributes = cjson.decode(redis.call('HGET', KEYS[1], 'attributes') or '{}')
for k, v in pairs(cjson.decode(ARGV[6])) do
  if attributes[k] ~= v then return {'noSession'} end
end
local current = redis.call('GET', KEYS[2])
local writtenBy = redis.call('HGET', KEYS[1], 'writtenBy') or ''
if ARGV[5] == 'takeover' then
  if current and state == 'publishing' then return {'publishing'} end
  redis.call('HSET', KEYS[1], 'committed', 0, 'state', 'open')
  redis.call('HDEL', KEYS[1], 'writtenBy', 'sha256', 'md5', 'crc32c', 'sha512', 'writerDigests')
elseif current then
  if ARGV[5] == 'request' then redis.call('HSET', KEYS[1], 'releaseAsked', current) end
  return {'held', current}
end
redis.call('HDEL', KEYS[1], 'releaseAsked')
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[4])
if ARGV[5] == 'publish' then redis.call('HSET', KEYS[1], 'state', 'publishing') end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'acquired', fence, redis.call('HGET', KEYS[1], 'committed'), writtenBy, deadline}`,
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

export const SaveDigests = statuses('saved', 'leaseLost', 'noSession', 'moved');
/**
 * Leaves the running digests of a writer that ends cleanly in `writerDigests`, for the upload's
 * next writer on any replica, under the writer's lease (a writer that lost it, even one that still
 * believes it holds it, cannot overwrite its successor's) and only while the committed size is the
 * one they cover ({moved} otherwise: nothing written). ARGV: token, committed, state → SaveDigests.
 */
export const saveDigests2 = lua<{ keys: SessionKeys; args: [token: string, committed: number, state: string]; result: string }>(
  'saveDigests2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'leaseLost' end
local committed = redis.call('HGET', KEYS[1], 'committed')
if not committed then return 'noSession' end
if tonumber(committed) ~= tonumber(ARGV[2]) then return 'moved' end
redis.call('HSET', KEYS[1], 'writerDigests', ARGV[3])
return 'saved'`,
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

export const Record = statuses('ok', 'leaseLost', 'noSession');
/**
 * Records the whole content a writer wrote (a takeover writer's: an object PUT) and releases its
 * lease: the committed size, the digests and `writtenBy`, the writer's fence (its staging holds the
 * bytes). ARGV: token, fence, nowMs, size, field, value... (digests) → Record.
 */
export const record2 = lua<{
  keys: SessionKeys;
  args: [token: string, fence: number, nowMs: number, size: number, ...digests: Fields];
  result: string;
}>(
  'record2',
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'leaseLost' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'noSession' end
redis.call('HDEL', KEYS[1], 'sha256', 'md5', 'crc32c', 'sha512', 'writerDigests')
redis.call('HSET', KEYS[1], 'committed', ARGV[4], 'writtenBy', ARGV[2], 'updatedAt', ARGV[3], unpack(ARGV, 5))
redis.call('DEL', KEYS[2])
return 'ok'`,
);

export const Amend = statuses('ok', 'gone', 'publishing', 'conflict');
/**
 * Changes a session's attributes (a protocol's facts that a client may add to: declared hashes, a
 * content type), only while it is open and not being published, and only if the attributes in
 * `match` still have those values (the same upload of a name). `fill`: set each attribute that is
 * absent, {conflict, attribute} if one has another value; `set`: overwrite. One step, so that two
 * clients declaring different values cannot both succeed. ARGV: nowMs, JSON {match, fill, set} →
 * {ok} | {gone} (none, expiring, or `match` differs) | {publishing} | {conflict, attribute}.
 */
export const amend2 = lua<{ keys: SessionKeys; args: [nowMs: number, change: string]; result: [status: string, attribute?: string] }>(
  'amend2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'expiring' or state == 'finished' then return {'gone'} end
local deadline = redis.call('HGET', KEYS[1], 'deadline') or ''
if deadline ~= '' and tonumber(deadline) <= tonumber(ARGV[1]) then return {'gone'} end
local attributes = cjson.decode(redis.call('HGET', KEYS[1], 'attributes') or '{}')
local change = cjson.decode(ARGV[2])
for k, v in pairs(change['match'] or {}) do
  if attributes[k] ~= v then return {'gone'} end
end
if state == 'publishing' and redis.call('EXISTS', KEYS[2]) == 1 then return {'publishing'} end
for k, v in pairs(change['fill'] or {}) do
  if attributes[k] ~= nil and attributes[k] ~= v then return {'conflict', k} end
  attributes[k] = v
end
for k, v in pairs(change['set'] or {}) do attributes[k] = v end
redis.call('HSET', KEYS[1], 'attributes', cjson.encode(attributes))
return {'ok'}`,
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
  redis.call('HDEL', KEYS[1], 'writerDigests')
  redis.call('HSET', KEYS[1], 'state', 'finished', 'result', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 'ok'`,
);

export const BeginExpiry = statuses('expiring', 'gone', 'leased', 'active', 'pinned');
/**
 * First step of expiring a session idle since before the cutoff (or past its deadline: a lifetime
 * counted from creation) and not leased: marks it `expiring`, which no writer can lease and no one
 * sees (its staged bytes are deleted next, then the session by endExpiry2), and records the state it
 * had in `expiredFrom`. Never deleting the session first is what keeps a client that recreates the
 * upload meanwhile (ByteStream names its upload) from writing into staging that is about to be
 * deleted. A `pinned` session (`pinned` = 1: a job owns its finish, as a completed multipart
 * upload's assembly does) is never idle: {pinned}.
 * ARGV: cutoffMs, nowMs → {expiring} (now, or by an earlier run that stopped half way) | {gone}
 * already | {leased} | {pinned} | {active, updatedAt, deadline}.
 */
export const beginExpiry2 = lua<{
  keys: SessionKeys;
  args: [cutoffMs: number, nowMs: number];
  result: [status: string, updatedAt?: number, deadline?: string];
}>(
  'beginExpiry2',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'expiring' then return {'expiring'} end
if redis.call('HGET', KEYS[1], 'pinned') == '1' then return {'pinned'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'leased'} end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updatedAt') or '0')
local deadline = redis.call('HGET', KEYS[1], 'deadline') or ''
local pastDeadline = deadline ~= '' and tonumber(deadline) <= tonumber(ARGV[2])
if updated > tonumber(ARGV[1]) and not pastDeadline then return {'active', updated, deadline} end
redis.call('HSET', KEYS[1], 'state', 'expiring', 'expiredFrom', state)
return {'expiring'}`,
);

export const EndExpiry = statuses('deleted', 'notExpiring');
/** Last step of an expiry, once the staged bytes are gone: deletes the session (and its parts, KEYS[3]). → EndExpiry. */
export const endExpiry3 = lua<{ keys: [...SessionKeys, parts: string]; args: []; result: string }>(
  'endExpiry3',
  `
if redis.call('HGET', KEYS[1], 'state') ~= 'expiring' then return 'notExpiring' end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 'deleted'`,
);
