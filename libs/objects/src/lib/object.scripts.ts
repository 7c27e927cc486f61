import { lua } from '@ferry/redis';

/**
 * Lua scripts of the object API (declared, bound and called as `lua` in @ferry/redis says). An
 * upload's hash (`objup:{<name tag>}`), its lease (`...:put`) and the name's catalog entry
 * (`obj:{<name tag>}`) share the name's hash tag. Each script answers a table whose first element
 * names the outcome (the tables below).
 */

/** Holders of the upload's lease that are finishing it (a PUT's holder never starts so). */
export const FINISHING = 'finish:';
/** Lua: whether KEYS[2] (the upload's lease) is held by a finisher. */
const heldByFinisher = `string.sub(redis.call('GET', KEYS[2]) or '', 1, ${FINISHING.length}) == '${FINISHING}'`;

/**
 * KEYS[1] the upload, KEYS[2] the catalog entry of the name. ARGV: ttl, now (ISO), field, value...
 * → {'created'}; {'finished'} if the name holds a live object (a finish that just published and
 * removed the upload is seen here, not missed between two round trips); else {'exists', the
 * existing hash as a flat list}.
 */
export const createIfAbsent2 = lua<[string, string[]?]>(
  'createIfAbsent2',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', redis.call('HGETALL', KEYS[1])} end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local expires = redis.call('HGET', KEYS[2], 'expires') or ''
  if expires == '' or expires > ARGV[2] then return {'finished'} end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {'created'}`,
);
export const Create = { created: 'created', finished: 'finished', exists: 'exists' } as const;

/** The answer of a script that changes an upload only while it is this upload and no finish holds it. */
export const Change = { done: 'done', gone: 'gone', finishing: 'finishing' } as const;

/** KEYS[1] the upload, KEYS[2] its lease. ARGV: uploadId, field, value... → Change. */
export const updateIfUpload2 = lua<[string]>(
  'updateIfUpload2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if ${heldByFinisher} then return {'finishing'} end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return {'done'}`,
);

/**
 * KEYS[1] the upload, KEYS[2] its PUT lease. ARGV: uploadId, holder, ttl → Change, with 'done' the
 * staging id of the bytes this PUT replaces ('' if none). The newest PUT always takes the lease
 * from a PUT: an earlier one (alive, or dead with a process that was killed) loses it, and the
 * stored digests are forgotten at once, so what was stored before can no longer be finished.
 */
export const beginPut2 = lua<[string, string?]>(
  'beginPut2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if ${heldByFinisher} then return {'finishing'} end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local previous = redis.call('HGET', KEYS[1], 'stagingId') or ''
redis.call('HDEL', KEYS[1], 'size', 'sha256', 'sha512', 'md5', 'crc32c', 'stagingId')
return {'done', previous}`,
);

/**
 * KEYS[1] the upload, KEYS[2] its PUT lease. ARGV: uploadId, holder, field, value... → 'recorded'
 * (this PUT still held the lease, now released), 'replaced' (a newer PUT took it), 'gone'.
 */
export const recordPut2 = lua<[string]>(
  'recordPut2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'replaced'} end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('DEL', KEYS[2])
return {'recorded'}`,
);
export const RecordPut = { recorded: 'recorded', replaced: 'replaced', gone: 'gone' } as const;

/**
 * KEYS[1] the upload, KEYS[2] its lease. ARGV: uploadId, the hashes a createUpload declares (JSON)
 * → Change ('done': merged into the declared hashes), or {'conflict', algo} when one differs from
 * the one already declared. One step, so that two createUploads declaring different hashes cannot
 * both succeed.
 */
export const declareHashes2 = lua<[string, string?]>(
  'declareHashes2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if ${heldByFinisher} then return {'finishing'} end
local known = cjson.decode(redis.call('HGET', KEYS[1], 'hashes') or '{}')
local declared = cjson.decode(ARGV[2])
for _, algo in ipairs({'sha256', 'sha512'}) do
  local v = declared[algo]
  if v ~= nil then
    if known[algo] ~= nil and known[algo] ~= v then return {'conflict', algo} end
    known[algo] = v
  end
end
redis.call('HSET', KEYS[1], 'hashes', cjson.encode(known))
return {'done'}`,
);
export const Declare = { ...Change, conflict: 'conflict' } as const;

/** KEYS[1] the upload. ARGV: uploadId, field, value → 'set' (it was absent), 'present', 'gone'. */
export const setIfAbsent1 = lua<[string]>(
  'setIfAbsent1',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 1 then return {'set'} end
return {'present'}`,
);
export const SetIfAbsent = { set: 'set', present: 'present', gone: 'gone' } as const;

/**
 * KEYS[1] the upload, KEYS[2] its lease. ARGV: uploadId, holder (FINISHING...), ttl, stagingId of
 * the stored bytes ('' when they are a snapshot of a direct PUT), the declared hashes the finisher
 * read (JSON) → 'claimed' (no PUT, createUpload or other finish changes the upload until the
 * finisher releases it), 'gone', 'replaced' (the stored bytes changed since they were read),
 * 'redeclared' (a createUpload declared another hash since then: read again), or {'held', holder}.
 */
export const claimFinish2 = lua<[string, string?]>(
  'claimFinish2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'stagingId') ~= ARGV[4] then return {'replaced'} end
local known = cjson.decode(redis.call('HGET', KEYS[1], 'hashes') or '{}')
local read = cjson.decode(ARGV[5])
if known['sha256'] ~= read['sha256'] or known['sha512'] ~= read['sha512'] then return {'redeclared'} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'claimed'} end
return {'held', redis.call('GET', KEYS[2]) or ''}`,
);
export const ClaimFinish = { claimed: 'claimed', gone: 'gone', replaced: 'replaced', redeclared: 'redeclared', held: 'held' } as const;

/** KEYS[1] a lease. ARGV: holder, ttl (0: release) → 'held' (renewed or released), 'lost'. */
export const lease1 = lua<[string]>(
  'lease1',
  `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lost'} end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {'held'}`,
);
export const LeaseHeld = { held: 'held', lost: 'lost' } as const;
