import { lua, statuses } from '@ferry/redis';

/**
 * Lua scripts of the object API (declared, bound and called as `lua` in @ferry/redis says). An
 * upload's hash (`objup:{<name tag>}`), its lease (`...:put`) and the name's catalog entry
 * (`obj:{<name tag>}`) share the name's hash tag, so every script runs within one slot on Redis
 * Cluster. A script that can end in several ways answers a status string (alone, or first in a
 * table), named in the table beside it.
 */

/** Holders of the upload's lease that are finishing it (a PUT's holder never starts so). */
export const FINISHING = 'finish:';
/** Lua: whether KEYS[2] (the upload's lease) is held by a finisher. */
const heldByFinisher = `string.sub(redis.call('GET', KEYS[2]) or '', 1, ${FINISHING.length}) == '${FINISHING}'`;

/** The keys of the scripts that change an upload: its hash, its lease (the name's hash tag). */
type UploadKeys = [upload: string, lease: string];
/** HSET's field, value, ... */
type Fields = (string | number)[];

export const Create = statuses('created', 'finished', 'exists');
/**
 * KEYS: the upload, the catalog entry of the name (the name's tag). ARGV: ttl, now (ISO), field,
 * value... → {created}; {finished} if the name holds a live object (a finish that just published
 * and removed the upload is seen here, not missed between two round trips); else {exists, the
 * existing hash as a flat list}.
 */
export const createIfAbsent2 = lua<{
  keys: [upload: string, object: string];
  args: [ttlMs: number, now: string, ...fields: Fields];
  result: [status: string, existing?: string[]];
}>(
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

export const UpdateIfUpload = statuses('done', 'gone', 'finishing');
/**
 * Changes an upload only while it is this upload and no finish holds it. KEYS: the upload, its
 * lease. ARGV: uploadId, field, value... → UpdateIfUpload.
 */
export const updateIfUpload2 = lua<{ keys: UploadKeys; args: [uploadId: string, ...fields: Fields]; result: string }>(
  'updateIfUpload2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return 'gone' end
if ${heldByFinisher} then return 'finishing' end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 'done'`,
);

export const BeginPut = statuses('done', 'gone', 'finishing');
/**
 * KEYS: the upload, its PUT lease. ARGV: uploadId, holder, ttl → {done, the staging id of the bytes
 * this PUT replaces ('' if none)} | {gone} | {finishing}. The newest PUT always takes the lease
 * from a PUT: an earlier one (alive, or dead with a process that was killed) loses it, and the
 * stored digests are forgotten at once, so what was stored before can no longer be finished.
 */
export const beginPut2 = lua<{
  keys: UploadKeys;
  args: [uploadId: string, holder: string, leaseTtlMs: number];
  result: [status: string, previousStagingId?: string];
}>(
  'beginPut2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return {'gone'} end
if ${heldByFinisher} then return {'finishing'} end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local previous = redis.call('HGET', KEYS[1], 'stagingId') or ''
redis.call('HDEL', KEYS[1], 'size', 'sha256', 'sha512', 'md5', 'crc32c', 'stagingId')
return {'done', previous}`,
);

export const RecordPut = statuses('recorded', 'replaced', 'gone');
/**
 * KEYS: the upload, its PUT lease. ARGV: uploadId, holder, field, value... → recorded (this PUT
 * still held the lease, now released), replaced (a newer PUT took it), gone.
 */
export const recordPut2 = lua<{ keys: UploadKeys; args: [uploadId: string, holder: string, ...fields: Fields]; result: string }>(
  'recordPut2',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return 'gone' end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 'replaced' end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('DEL', KEYS[2])
return 'recorded'`,
);

export const Declare = statuses('done', 'gone', 'finishing', 'conflict');
/**
 * KEYS: the upload, its lease. ARGV: uploadId, the hashes a createUpload declares (JSON) → {done}
 * (merged into the declared hashes) | {gone} | {finishing}, or {conflict, algo} when one differs
 * from the one already declared. One step, so that two createUploads declaring different hashes
 * cannot both succeed.
 */
export const declareHashes2 = lua<{
  keys: UploadKeys;
  args: [uploadId: string, hashes: string];
  result: [status: string, algo?: string];
}>(
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

export const SetIfAbsent = statuses('set', 'present', 'gone');
/** KEYS: the upload. ARGV: uploadId, field, value → set (it was absent), present, gone. */
export const setIfAbsent1 = lua<{ keys: [upload: string]; args: [uploadId: string, field: string, value: string]; result: string }>(
  'setIfAbsent1',
  `
if redis.call('HGET', KEYS[1], 'uploadId') ~= ARGV[1] then return 'gone' end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 1 then return 'set' end
return 'present'`,
);

export const ClaimFinish = statuses('claimed', 'gone', 'replaced', 'redeclared', 'held');
/**
 * KEYS: the upload, its lease. ARGV: uploadId, holder (FINISHING...), ttl, stagingId of the stored
 * bytes ('' when they are a snapshot of a direct PUT), the declared hashes the finisher read (JSON)
 * → {claimed} (no PUT, createUpload or other finish changes the upload until the finisher releases
 * it), {gone}, {replaced} (the stored bytes changed since they were read), {redeclared} (a
 * createUpload declared another hash since then: read again), or {held, holder}.
 */
export const claimFinish2 = lua<{
  keys: UploadKeys;
  args: [uploadId: string, holder: string, leaseTtlMs: number, stagingId: string, hashes: string];
  result: [status: string, holder?: string];
}>(
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

export const Lease = statuses('held', 'lost');
/** KEYS: a lease (its upload's tag). ARGV: holder, ttl (0: release) → held (renewed or released), lost. */
export const lease1 = lua<{ keys: [lease: string]; args: [holder: string, ttlMs: number]; result: string }>(
  'lease1',
  `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost' end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 'held'`,
);
