import { lua, statuses } from '@ferry/redis';
import type { MultipartState } from './model';

/**
 * Lua scripts of the multipart store (declared, bound and called as `lua` in @ferry/redis says; a
 * script that can end in several ways answers a status string, alone or first in a table, named in
 * the table beside it). A multipart upload is an upload session (libs/sessions) written as ranges:
 * its hash is the session's, with the session's fields (`state`, `createdAt`, `updatedAt`,
 * `fence`, the digests) and the multipart ones below. Every script checks that the upload still
 * exists, and is not being expired, before writing (so nothing resurrects an expired or abandoned
 * upload) and refreshes its activity time and key lifetime.
 *
 * KEYS[1] the session hash, KEYS[2] its parts string, KEYS[3] (where used) the lease of one part,
 * or the session's writer lease, held by whoever advances the whole-file digests (`digest*`
 * scripts). All three share the upload's hash tag.
 * ARGV[1] now (ms), ARGV[2] key lifetime (ms), then the script's own arguments.
 * States: the scripts speak the protocol's (UPLOADING, ASSEMBLING, COMPLETED, FAILED), stored as the
 * session's: open, publishing (and `pinned` = 1 while its assembly job owns it: never idle), finished
 * with `outcome` COMPLETED or FAILED; an `expiring` session is no upload any more.
 * Hash fields of their own: `s:<n>` = md5 of part n's stored bytes, and the progress of the
 * whole-file digests (see DigestProgress): `dgParts` = how many leading parts they cover,
 * `dgState` = the saved digest state after them, `dgEpoch` = bumped whenever a part they cover, or
 * one a digest round may be reading (an added part), changes: a round that began in another epoch
 * saves nothing. The writer lease's fence (`fence`) grows with every digest round's new holder.
 */
const prelude = `
local function touch()
  redis.call('HSET', KEYS[1], 'updatedAt', ARGV[1])
  if redis.call('HGET', KEYS[1], 'state') == 'publishing' then
    -- completed by its client: kept until its assembly job settles it, however late a worker runs
    redis.call('PERSIST', KEYS[1])
    redis.call('PERSIST', KEYS[2])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
end
local function stateOf(stored)
  if stored == 'open' then return 'UPLOADING' end
  if stored == 'publishing' then return 'ASSEMBLING' end
  if stored == 'finished' then return redis.call('HGET', KEYS[1], 'outcome') end
  return nil
end
local function setState(s)
  if s == 'UPLOADING' then
    redis.call('HSET', KEYS[1], 'state', 'open')
  elseif s == 'ASSEMBLING' then
    redis.call('HSET', KEYS[1], 'state', 'publishing', 'pinned', 1)
  else
    redis.call('HSET', KEYS[1], 'state', 'finished', 'outcome', s, 'pinned', 0)
  end
end
local state = stateOf(redis.call('HGET', KEYS[1], 'state'))
`;

/**
 * Part `n`'s bytes may change (a new PUT begins, or the bucket reports other bytes): digests that
 * cover it start again from byte 0 (a digest state cannot be rolled back to the part's start), and
 * a round that may be reading it (it was added) saves nothing (its epoch is over). Call it before
 * the part is marked missing.
 */
const partChanges = `
local function partChanges(n)
  local hashed = tonumber(redis.call('HGET', KEYS[1], 'dgParts') or '0')
  if n <= hashed or redis.call('GETRANGE', KEYS[2], n - 1, n - 1) == '1' then
    redis.call('HINCRBY', KEYS[1], 'dgEpoch', 1)
    if n <= hashed then
      redis.call('HSET', KEYS[1], 'dgParts', 0)
      redis.call('HDEL', KEYS[1], 'dgState')
    end
  end
end
`;

/**
 * The next digest round from the parts hashed so far: up to the first part not added, at most
 * `maxParts` parts → hashed, upTo, and the answer {round, state, hashed, epoch, upTo, snapshot,
 * fence} (state '' = nothing hashed yet; see DigestRoundAnswer).
 */
const nextRound = `
local function nextRound(maxParts)
  local hashed = tonumber(redis.call('HGET', KEYS[1], 'dgParts') or '0')
  local parts = redis.call('GET', KEYS[2]) or ''
  local gap = string.find(parts, '0', hashed + 1, true)
  local upTo = math.min(gap and gap - 1 or #parts, hashed + maxParts)
  local f = redis.call('HMGET', KEYS[1], 'dgState', 'dgEpoch', 'snapshot', 'fence')
  return hashed, upTo, {'round', f[1] or '', hashed, f[2] or '0', upTo, f[3] or '', tonumber(f[4] or '0')}
end
`;

/** The keys of an upload: its hash, its partsState (the upload's hash tag). */
type UploadKeys = [upload: string, parts: string];
/** An upload's keys and the lease of one of its parts (`beginPart3` ... `abortPart3`, `addPart3`, `partReplaced3`). */
type PartKeys = [upload: string, parts: string, partLease: string];
/** An upload's keys and its digest lease (`digest*` scripts). */
type DigestKeys = [upload: string, parts: string, digestLease: string];
/** ARGV[1] and ARGV[2] of every script of an upload: now, the key lifetime. */
type Times = [nowMs: number, keyTtlMs: number];
/** HSET's field, value, ... */
type Fields = (string | number)[];

/** A state a script answers (first element `frozen`, `settled`, `ok`...), named as the model names it. */
export const State = statuses('UPLOADING', 'ASSEMBLING', 'COMPLETED', 'FAILED') satisfies { readonly [S in MultipartState]: S };

export const Create = statuses('created', 'existed');
/** ARGV[3] parts count, then field/value pairs → Create. */
export const create2 = lua<{ keys: UploadKeys; args: [...Times, parts: number, ...fields: Fields]; result: string }>(
  'create2',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 'existed' end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[2], string.rep('0', tonumber(ARGV[3])))
redis.call('HSET', KEYS[1], 'createdAt', ARGV[1], 'updatedAt', ARGV[1], 'state', 'open', 'committed', 0, 'fence', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 'created'`,
);

export const BeginPart = statuses('begun', 'noUpload', 'noSuchPart', 'frozen', 'held');
/**
 * A PUT of part ARGV[3] begins, holder ARGV[4], lease ARGV[5] ms: the part's previous bytes are no
 * longer trusted (its stored md5 is dropped, it is missing again, digests over it start again) until
 * this PUT ends.
 * → {begun} | {noUpload} | {noSuchPart, parts} not one of parts 1..parts (nothing changes) |
 * {frozen, state} not UPLOADING | {held, pttl} another PUT holds the part.
 */
export const beginPart3 = lua<{
  keys: PartKeys;
  args: [...Times, partNumber: number, holder: string, leaseTtlMs: number];
  result: [status: string, stateOrPttl?: string | number];
}>(
  'beginPart3',
  `${prelude}${partChanges}
if not state then return {'noUpload'} end
local n = tonumber(ARGV[3])
local parts = redis.call('STRLEN', KEYS[2])
if not n or n < 1 or n > parts or n % 1 ~= 0 then return {'noSuchPart', parts} end
if state ~= 'UPLOADING' then return {'frozen', state} end
if not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5]) then return {'held', redis.call('PTTL', KEYS[3])} end
partChanges(tonumber(ARGV[3]))
redis.call('HDEL', KEYS[1], 's:' .. ARGV[3])
redis.call('SETRANGE', KEYS[2], tonumber(ARGV[3]) - 1, '0')
touch()
return {'begun'}`,
);

export const RenewPart = statuses('renewed', 'lost');
/** Renews part ARGV[3]'s lease held by ARGV[4] for ARGV[5] ms → RenewPart. */
export const renewPart3 = lua<{ keys: PartKeys; args: [...Times, partNumber: number, holder: string, leaseTtlMs: number]; result: string }>(
  'renewPart3',
  `${prelude}
if not state or redis.call('GET', KEYS[3]) ~= ARGV[4] then return 'lost' end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
touch()
return 'renewed'`,
);

export const EndPart = statuses('ended', 'lost', 'noUpload');
/** The PUT of part ARGV[3] by ARGV[4] stored bytes with md5 ARGV[5] durably → EndPart (lost: its lease was). */
export const endPart3 = lua<{ keys: PartKeys; args: [...Times, partNumber: number, holder: string, md5: string]; result: string }>(
  'endPart3',
  `${prelude}
if not state then return 'noUpload' end
if redis.call('GET', KEYS[3]) ~= ARGV[4] then return 'lost' end
redis.call('HSET', KEYS[1], 's:' .. ARGV[3], ARGV[5])
redis.call('DEL', KEYS[3])
touch()
return 'ended'`,
);

/** A PUT by ARGV[4] failed: releases its lease (the part stays missing). */
export const abortPart3 = lua<{ keys: PartKeys; args: [...Times, partNumber: number, holder: string]; result: number }>(
  'abortPart3',
  `
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return 1`,
);

export const AddPart = statuses('added', 'noUpload', 'noSuchPart', 'frozen', 'putInProgress', 'noBytes', 'md5Differs');
/**
 * Adds part ARGV[3] if its stored bytes have md5 ARGV[4]. ARGV[5], when not empty, is the md5 the
 * store itself reports for the part (parts PUT straight to the bucket): it becomes the stored md5.
 * → {added} | {noUpload} | {noSuchPart, parts} not one of parts 1..parts (nothing changes) |
 * {frozen, state} | {putInProgress} a PUT is in progress | {noBytes} no bytes stored |
 * {md5Differs, stored md5}.
 * Adding an already-added part with the same md5 again succeeds (idempotent) while the upload is
 * UPLOADING; once it is completing, completed or failed its parts no longer change: {frozen, state}.
 */
export const addPart3 = lua<{
  keys: PartKeys;
  args: [...Times, partNumber: number, md5: string, observedMd5: string];
  result: [status: string, detail?: string];
}>(
  'addPart3',
  `${prelude}${partChanges}
if not state then return {'noUpload'} end
local n = tonumber(ARGV[3])
local parts = redis.call('STRLEN', KEYS[2])
if not n or n < 1 or n > parts or n % 1 ~= 0 then return {'noSuchPart', tostring(parts)} end
if state == 'UPLOADING' and ARGV[5] ~= '' then
  if redis.call('HGET', KEYS[1], 's:' .. ARGV[3]) ~= ARGV[5] then
    partChanges(n)
    redis.call('SETRANGE', KEYS[2], n - 1, '0')
  end
  redis.call('HSET', KEYS[1], 's:' .. ARGV[3], ARGV[5])
end
if state ~= 'UPLOADING' then return {'frozen', state} end
local stored = redis.call('HGET', KEYS[1], 's:' .. ARGV[3])
if stored == ARGV[4] and redis.call('GETRANGE', KEYS[2], n - 1, n - 1) == '1' then return {'added'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'putInProgress'} end
if not stored then return {'noBytes'} end
if stored ~= ARGV[4] then return {'md5Differs', stored} end
redis.call('SETRANGE', KEYS[2], n - 1, '1')
touch()
return {'added'}`,
);

export const Complete = statuses('ok', 'noUpload', 'missing');
/** UPLOADING → ASSEMBLING if every part is added. → {ok, state afterwards} | {noUpload} | {missing, partsState}. */
export const complete2 = lua<{ keys: UploadKeys; args: Times; result: [status: string, stateOrParts?: string] }>(
  'complete2',
  `${prelude}
if not state then return {'noUpload'} end
if state == 'ASSEMBLING' then
  -- completed again: its assembly is revived, so it no longer waits to expire (see assemblyGaveUp)
  redis.call('HSET', KEYS[1], 'pinned', 1)
  touch()
end
if state ~= 'UPLOADING' then return {'ok', state} end
local parts = redis.call('GET', KEYS[2])
if string.find(parts, '0', 1, true) then return {'missing', parts} end
setState('ASSEMBLING')
touch()
return {'ok', 'ASSEMBLING'}`,
);

export const Update = statuses('done', 'otherState');
/**
 * If the state is ARGV[3]: moves to state ARGV[4] ('' = stays) and sets the field/value pairs from
 * ARGV[5] on → {done}, else {otherState, state ('' if none)}.
 */
export const update2 = lua<{
  keys: UploadKeys;
  args: [...Times, from: MultipartState, to: MultipartState | '', ...fields: Fields];
  result: [status: string, state?: string];
}>(
  'update2',
  `${prelude}
if state ~= ARGV[3] then return {'otherState', state or ''} end
if ARGV[4] ~= '' then setState(ARGV[4]) end
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
touch()
return {'done'}`,
);

/**
 * While the state is ARGV[3]: records ARGV[5] in field ARGV[4] unless one is recorded → the recorded
 * value, or '' in another state (a handle id chosen once, whichever attempt gets there first).
 */
export const claimField2 = lua<{
  keys: UploadKeys;
  args: [...Times, state: MultipartState, field: string, candidate: string];
  result: string;
}>(
  'claimField2',
  `${prelude}
if state ~= ARGV[3] then return '' end
redis.call('HSETNX', KEYS[1], ARGV[4], ARGV[5])
touch()
return redis.call('HGET', KEYS[1], ARGV[4])`,
);

export const Swap = statuses('swapped', 'differs');
/** KEYS[1] a hash (a per-user index): sets field ARGV[1] to ARGV[3] if it holds ARGV[2] ('' = absent) → {swapped}, else {differs, its value}. */
export const compareAndSetField1 = lua<{
  keys: [hash: string];
  args: [field: string, expected: string, next: string];
  result: [status: string, current?: string];
}>(
  'compareAndSetField1',
  `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return {'differs', cur or ''} end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return {'swapped'}`,
);

export const CompleteAsDuplicate = statuses('done', 'otherState');
/** Dedup: UPLOADING → COMPLETED with handle ARGV[3] (a copy of ARGV[4]), every part present → {done}, else {otherState, state}. */
export const completeAsDuplicate2 = lua<{
  keys: UploadKeys;
  args: [...Times, handleId: string, originalHandleId: string];
  result: [status: string, state?: string];
}>(
  'completeAsDuplicate2',
  `${prelude}
if state ~= 'UPLOADING' then return {'otherState', state or ''} end
redis.call('SET', KEYS[2], string.rep('1', redis.call('STRLEN', KEYS[2])))
setState('COMPLETED')
redis.call('HSET', KEYS[1], 'resultFileHandleId', ARGV[3], 'dedupOf', ARGV[4])
touch()
return {'done'}`,
);

export const Delete = statuses('deleted', 'otherState');
/** Deletes the upload if its state is ARGV[3] → deleted, else otherState (it moved on: leave it to its new owner). */
export const deleteIf2 = lua<{ keys: UploadKeys; args: [...Times, state: MultipartState]; result: string }>(
  'deleteIf2',
  `${prelude}
if state ~= ARGV[3] then return 'otherState' end
redis.call('DEL', KEYS[1], KEYS[2])
return 'deleted'`,
);

/**
 * The answer of digestBegin3 and digestSave3: {round, state, hashed, epoch, upTo, snapshot, fence}
 * (nextRound), or a status with at most one detail (a state, a count of parts, a pttl).
 */
export type DigestRoundAnswer = [
  status: string,
  stateOrDetail?: string | number,
  hashed?: number,
  epoch?: string,
  upTo?: number,
  snapshot?: string,
  fence?: number,
];

export const DigestBegin = statuses('round', 'nothing', 'busy', 'noUpload', 'settled');
/**
 * The digest lease (the session's writer lease): one process at a time advances an upload's
 * whole-file digests (DigestProgress). KEYS[3] the writer lease. ARGV[3] holder, ARGV[4] lease ms, ARGV[5] most parts per round,
 * ARGV[6] a staging id for the private copy of the hashed bytes (S3; '' on disk), recorded once.
 * Takes the lease (or renews it, if ARGV[3] holds it already) when parts were added past those
 * hashed, a new holder with a new fence (`fence`, growing: the private copy's objects carry it):
 * → {round, state, hashed, epoch, upTo, snapshot, fence}; else → {nothing, hashed} (and a lease
 * ARGV[3] held is released) | {busy, pttl} | {noUpload} | {settled, state} (not UPLOADING or
 * ASSEMBLING: nothing to advance).
 */
export const digestBegin3 = lua<{
  keys: DigestKeys;
  args: [...Times, holder: string, leaseMs: number, maxParts: number, snapshot: string];
  result: DigestRoundAnswer;
}>(
  'digestBegin3',
  `${prelude}${nextRound}
if not state then return {'noUpload'} end
if state ~= 'UPLOADING' and state ~= 'ASSEMBLING' then return {'settled', state} end
local hashed, upTo, round = nextRound(tonumber(ARGV[5]))
local mine = redis.call('GET', KEYS[3]) == ARGV[3]
if upTo <= hashed then
  if mine then redis.call('DEL', KEYS[3]) end
  return {'nothing', hashed}
end
if mine then
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
elseif not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {'busy', redis.call('PTTL', KEYS[3])}
else
  round[7] = redis.call('HINCRBY', KEYS[1], 'fence', 1)
end
if ARGV[6] ~= '' then
  redis.call('HSETNX', KEYS[1], 'snapshot', ARGV[6])
  round[6] = redis.call('HGET', KEYS[1], 'snapshot')
end
return round`,
);

export const DigestSave = statuses('round', 'released', 'lost', 'stale', 'noUpload', 'settled');
/**
 * Saves a round's digest state ARGV[9] covering parts 1..ARGV[8], if ARGV[3] still holds the lease
 * and nothing changed since the round began (epoch ARGV[6], ARGV[7] parts hashed then). Then the next
 * round (at most ARGV[5] parts), if parts were added past them (the lease renewed for ARGV[4] ms):
 * → {round, ...} as digestBegin3; else the lease is released: → {released}. Or → {lost} (the lease
 * is not ARGV[3]'s), {stale} (a part changed: nothing saved; begin again), {noUpload}, {settled, state}.
 */
export const digestSave3 = lua<{
  keys: DigestKeys;
  args: [...Times, holder: string, leaseMs: number, maxParts: number, epoch: string, hashedBefore: number, hashed: number, state: string];
  result: DigestRoundAnswer;
}>(
  'digestSave3',
  `${prelude}${nextRound}
if not state then return {'noUpload'} end
if state ~= 'UPLOADING' and state ~= 'ASSEMBLING' then return {'settled', state} end
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {'lost'} end
local seen = redis.call('HMGET', KEYS[1], 'dgEpoch', 'dgParts')
if (seen[1] or '0') ~= ARGV[6] or tonumber(seen[2] or '0') ~= tonumber(ARGV[7]) then return {'stale'} end
redis.call('HSET', KEYS[1], 'dgParts', ARGV[8], 'dgState', ARGV[9])
local hashed, upTo, round = nextRound(tonumber(ARGV[5]))
if upTo <= hashed then
  redis.call('DEL', KEYS[3])
  return {'released'}
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return round`,
);

export const DigestRenew = statuses('renewed', 'lost');
/** Renews the digest lease held by ARGV[3] for ARGV[4] ms → DigestRenew. */
export const digestRenew3 = lua<{ keys: DigestKeys; args: [...Times, holder: string, leaseMs: number]; result: string }>(
  'digestRenew3',
  `
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 'lost' end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 'renewed'`,
);

/** Releases the digest lease if ARGV[3] holds it (a round that stopped: what it did is not saved). */
export const digestRelease3 = lua<{ keys: DigestKeys; args: [...Times, holder: string]; result: number }>(
  'digestRelease3',
  `
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1`,
);

export const PartReplaced = statuses('missing', 'unchanged', 'noUpload', 'frozen');
/**
 * S3: the bucket holds bytes of md5 ARGV[5] for part ARGV[3], added with md5 ARGV[4] (a client PUT it
 * again after adding it; Ferry does not see PUTs to the bucket). While UPLOADING, and if the part
 * is still added with ARGV[4], it is missing again (its stored md5 is now ARGV[5], as add-part
 * would find; '' if it has none): → {missing}; → {frozen, state} once complete was called;
 * {unchanged} if the part moved on meanwhile; {noUpload}.
 */
export const partReplaced3 = lua<{
  keys: PartKeys;
  args: [...Times, partNumber: number, addedMd5: string, observedMd5: string];
  result: [status: string, state?: string];
}>(
  'partReplaced3',
  `${prelude}${partChanges}
if not state then return {'noUpload'} end
if state ~= 'UPLOADING' then return {'frozen', state} end
local n = tonumber(ARGV[3])
if redis.call('HGET', KEYS[1], 's:' .. ARGV[3]) ~= ARGV[4] then return {'unchanged'} end
partChanges(n)
redis.call('SETRANGE', KEYS[2], n - 1, '0')
if ARGV[5] == '' then redis.call('HDEL', KEYS[1], 's:' .. ARGV[3]) else redis.call('HSET', KEYS[1], 's:' .. ARGV[3], ARGV[5]) end
touch()
return {'missing'}`,
);
