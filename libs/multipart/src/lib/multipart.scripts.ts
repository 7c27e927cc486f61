import { lua } from '@ferry/redis';

/**
 * Lua scripts of the multipart store (declared, bound and called as `lua` in @ferry/redis says;
 * their answers are named in the tables at the end). Every script checks that the upload still exists before
 * writing (so nothing resurrects an expired or abandoned upload) and refreshes its activity time
 * and key lifetime.
 *
 * KEYS[1] upload hash, KEYS[2] partsState string, KEYS[3] (where used) the lease of one part, or
 * the digest lease (`digest*` scripts). All three share the upload's hash tag.
 * ARGV[1] now (ms), ARGV[2] key lifetime (ms), then the script's own arguments.
 * Hash fields: request and state fields, `s:<n>` = md5 of part n's stored bytes, and the progress of
 * the whole-file digests (see DigestProgress): `dgParts` = how many leading parts they cover,
 * `dgState` = the saved digest state after them, `dgEpoch` = bumped whenever a part they cover, or
 * one a digest round may be reading (an added part), changes: a round that began in another epoch
 * saves nothing.
 */
const prelude = `
local function touch()
  redis.call('HSET', KEYS[1], 'updatedOn', ARGV[1])
  if redis.call('HGET', KEYS[1], 'state') == 'ASSEMBLING' then
    -- completed by its client: kept until its assembly job settles it, however late a worker runs
    redis.call('PERSIST', KEYS[1])
    redis.call('PERSIST', KEYS[2])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
end
local state = redis.call('HGET', KEYS[1], 'state')
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
 * `maxParts` parts → hashed, upTo, and the answer {DigestRound.round, state, hashed, epoch, upTo,
 * snapshot} (state '' = nothing hashed yet).
 */
const nextRound = `
local function nextRound(maxParts)
  local hashed = tonumber(redis.call('HGET', KEYS[1], 'dgParts') or '0')
  local parts = redis.call('GET', KEYS[2]) or ''
  local gap = string.find(parts, '0', hashed + 1, true)
  local upTo = math.min(gap and gap - 1 or #parts, hashed + maxParts)
  local f = redis.call('HMGET', KEYS[1], 'dgState', 'dgEpoch', 'snapshot', 'dgFence')
  return hashed, upTo, {1, f[1] or '', hashed, f[2] or '0', upTo, f[3] or '', tonumber(f[4] or '0')}
end
`;

/** ARGV[3] parts count, then field/value pairs → 1 created, 0 existed. */
export const create2 = lua(
  'create2',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[2], string.rep('0', tonumber(ARGV[3])))
redis.call('HSET', KEYS[1], 'updatedOn', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`,
);

/**
 * A PUT of part ARGV[3] begins, holder ARGV[4], lease ARGV[5] ms: the part's previous bytes are no
 * longer trusted (its stored md5 is dropped, it is missing again, digests over it start again) until
 * this PUT ends.
 * → {1} | {-1} no upload | {-2, state} not UPLOADING | {-3, pttl} another PUT holds the part.
 */
export const beginPart3 = lua(
  'beginPart3',
  `${prelude}${partChanges}
if not state then return {-1} end
if state ~= 'UPLOADING' then return {-2, state} end
if not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5]) then return {-3, redis.call('PTTL', KEYS[3])} end
partChanges(tonumber(ARGV[3]))
redis.call('HDEL', KEYS[1], 's:' .. ARGV[3])
redis.call('SETRANGE', KEYS[2], tonumber(ARGV[3]) - 1, '0')
touch()
return {1}`,
);

/** Renews part ARGV[3]'s lease held by ARGV[4] for ARGV[5] ms → 1, or 0 if lost. */
export const renewPart3 = lua(
  'renewPart3',
  `${prelude}
if not state or redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
touch()
return 1`,
);

/** The PUT of part ARGV[3] by ARGV[4] stored bytes with md5 ARGV[5] durably → 1, or 0 if its lease was lost, -1 no upload. */
export const endPart3 = lua(
  'endPart3',
  `${prelude}
if not state then return -1 end
if redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 's:' .. ARGV[3], ARGV[5])
redis.call('DEL', KEYS[3])
touch()
return 1`,
);

/** A PUT by ARGV[4] failed: releases its lease (the part stays missing). */
export const abortPart3 = lua(
  'abortPart3',
  `
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return 1`,
);

/**
 * Adds part ARGV[3] if its stored bytes have md5 ARGV[4]. ARGV[5], when not empty, is the md5 the
 * store itself reports for the part (parts PUT straight to the bucket): it becomes the stored md5.
 * → {1} | {-1} | {-2, state} | {-3} a PUT is in progress | {-4} no bytes stored | {-5, stored md5}.
 * Adding an already-added part with the same md5 again succeeds (idempotent) while the upload is
 * UPLOADING; once it is completing, completed or failed its parts no longer change: {-2, state}.
 */
export const addPart3 = lua(
  'addPart3',
  `${prelude}${partChanges}
if not state then return {-1} end
local n = tonumber(ARGV[3])
if state == 'UPLOADING' and ARGV[5] ~= '' then
  if redis.call('HGET', KEYS[1], 's:' .. ARGV[3]) ~= ARGV[5] then
    partChanges(n)
    redis.call('SETRANGE', KEYS[2], n - 1, '0')
  end
  redis.call('HSET', KEYS[1], 's:' .. ARGV[3], ARGV[5])
end
if state ~= 'UPLOADING' then return {-2, state} end
local stored = redis.call('HGET', KEYS[1], 's:' .. ARGV[3])
if stored == ARGV[4] and redis.call('GETRANGE', KEYS[2], n - 1, n - 1) == '1' then return {1} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {-3} end
if not stored then return {-4} end
if stored ~= ARGV[4] then return {-5, stored} end
redis.call('SETRANGE', KEYS[2], n - 1, '1')
touch()
return {1}`,
);

/** UPLOADING → ASSEMBLING if every part is added. → {1, state} | {-1} | {-4, partsState}. */
export const complete2 = lua(
  'complete2',
  `${prelude}
if not state then return {-1} end
if state == 'ASSEMBLING' then
  -- completed again: its assembly is revived, so it no longer waits to expire (assemblyGaveUp)
  redis.call('HDEL', KEYS[1], 'assemblyGaveUp')
  touch()
end
if state ~= 'UPLOADING' then return {1, state} end
local parts = redis.call('GET', KEYS[2])
if string.find(parts, '0', 1, true) then return {-4, parts} end
redis.call('HSET', KEYS[1], 'state', 'ASSEMBLING')
touch()
return {1, 'ASSEMBLING'}`,
);

/** If the state is ARGV[3]: sets the field/value pairs from ARGV[4] on → {Changed.done}, else {Changed.otherState, state ('' if none)}. */
export const update2 = lua(
  'update2',
  `${prelude}
if state ~= ARGV[3] then return {0, state or ''} end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
touch()
return {1}`,
);

/**
 * While the state is ARGV[3]: records ARGV[5] in field ARGV[4] unless one is recorded → the recorded
 * value, or '' in another state (a handle id chosen once, whichever attempt gets there first).
 */
export const claimField2 = lua(
  'claimField2',
  `${prelude}
if state ~= ARGV[3] then return '' end
redis.call('HSETNX', KEYS[1], ARGV[4], ARGV[5])
touch()
return redis.call('HGET', KEYS[1], ARGV[4])`,
);

/**
 * Deletes an upload idle since before ARGV[3] (ms) → {1, owner, requestKey, state, dedupHandleId, snapshot} deleted,
 * {0} already gone, {-1, updatedOn} still active, {-2} ASSEMBLING: never idle, its client completed
 * it (every part acknowledged) and its assembly job settles it, however late a worker runs; unless
 * that job gave up (`assemblyGaveUp`, its retries spent): then it expires as an idle upload does,
 * unless a complete revives it first.
 */
export const expireIfIdle2 = lua(
  'expireIfIdle2',
  `${prelude}
if not state then redis.call('DEL', KEYS[2]) return {0} end
if state == 'ASSEMBLING' and not redis.call('HGET', KEYS[1], 'assemblyGaveUp') then return {-2} end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updatedOn') or '0')
if updated > tonumber(ARGV[3]) then return {-1, tostring(updated)} end
local info = redis.call('HMGET', KEYS[1], 'owner', 'requestKey', 'dedupHandleId', 'snapshot')
redis.call('DEL', KEYS[1], KEYS[2])
return {1, info[1] or '', info[2] or '', state, info[3] or '', info[4] or ''}`,
);

/** KEYS[1] a hash: sets field ARGV[1] to ARGV[3] if it holds ARGV[2] ('' = absent) → {Swap.swapped}, else {Swap.differs, its value}. */
export const compareAndSetField1 = lua(
  'compareAndSetField1',
  `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return {0, cur or ''} end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return {1}`,
);

/** Dedup: UPLOADING → COMPLETED with handle ARGV[3] (a copy of ARGV[4]), every part present → {Changed.done}, else {Changed.otherState, state}. */
export const completeAsDuplicate2 = lua(
  'completeAsDuplicate2',
  `${prelude}
if state ~= 'UPLOADING' then return {0, state or ''} end
redis.call('SET', KEYS[2], string.rep('1', tonumber(redis.call('HGET', KEYS[1], 'parts'))))
redis.call('HSET', KEYS[1], 'state', 'COMPLETED', 'resultFileHandleId', ARGV[3], 'dedupOf', ARGV[4])
touch()
return {1}`,
);

/** Deletes the upload if its state is ARGV[3] → 1, else 0 (it moved on: leave it to its new owner). */
export const deleteIf2 = lua(
  'deleteIf2',
  `${prelude}
if state ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1`,
);

/**
 * The digest lease: one process at a time advances an upload's whole-file digests (DigestProgress).
 * KEYS[3] the digest lease. ARGV[3] holder, ARGV[4] lease ms, ARGV[5] most parts per round,
 * ARGV[6] a staging id for the private copy of the hashed bytes (S3; '' on disk), recorded once.
 * Takes the lease (or renews it, if ARGV[3] holds it already) when parts were added past those
 * hashed, a new holder with a new fence (`dgFence`, growing: the private copy's objects carry it):
 * → {DigestRound.round, state, hashed, epoch, upTo, snapshot, fence}; else → {nothing, hashed} (and
 * a lease ARGV[3] held is released) | {busy, pttl} | {noUpload} | {settled, state} (not UPLOADING
 * or ASSEMBLING: nothing to advance).
 */
export const digestBegin3 = lua(
  'digestBegin3',
  `${prelude}${nextRound}
if not state then return {-1} end
if state ~= 'UPLOADING' and state ~= 'ASSEMBLING' then return {-2, state} end
local hashed, upTo, round = nextRound(tonumber(ARGV[5]))
local mine = redis.call('GET', KEYS[3]) == ARGV[3]
if upTo <= hashed then
  if mine then redis.call('DEL', KEYS[3]) end
  return {0, hashed}
end
if mine then
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
elseif not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {-3, redis.call('PTTL', KEYS[3])}
else
  round[7] = redis.call('HINCRBY', KEYS[1], 'dgFence', 1)
end
if ARGV[6] ~= '' then
  redis.call('HSETNX', KEYS[1], 'snapshot', ARGV[6])
  round[6] = redis.call('HGET', KEYS[1], 'snapshot')
end
return round`,
);

/**
 * Saves a round's digest state ARGV[9] covering parts 1..ARGV[8], if ARGV[3] still holds the lease
 * and nothing changed since the round began (epoch ARGV[6], ARGV[7] parts hashed then). Then the next
 * round (at most ARGV[5] parts), if parts were added past them (the lease renewed for ARGV[4] ms):
 * → {DigestRound.round, ...} as digestBegin3; else the lease is released: → {released}. Or → {lost} (the lease is not ARGV[3]'s),
 * {stale} (a part changed: nothing saved; begin again), {noUpload}, {settled, state}.
 */
export const digestSave3 = lua(
  'digestSave3',
  `${prelude}${nextRound}
if not state then return {-1} end
if state ~= 'UPLOADING' and state ~= 'ASSEMBLING' then return {-2, state} end
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {-4} end
local seen = redis.call('HMGET', KEYS[1], 'dgEpoch', 'dgParts')
if (seen[1] or '0') ~= ARGV[6] or tonumber(seen[2] or '0') ~= tonumber(ARGV[7]) then return {-5} end
redis.call('HSET', KEYS[1], 'dgParts', ARGV[8], 'dgState', ARGV[9])
local hashed, upTo, round = nextRound(tonumber(ARGV[5]))
if upTo <= hashed then
  redis.call('DEL', KEYS[3])
  return {2}
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return round`,
);

/** Renews the digest lease held by ARGV[3] for ARGV[4] ms → {Renewed.renewed} | {lost}. */
export const digestRenew3 = lua(
  'digestRenew3',
  `
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1`,
);

/** Releases the digest lease if ARGV[3] holds it (a round that stopped: what it did is not saved). */
export const digestRelease3 = lua(
  'digestRelease3',
  `
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1`,
);

/**
 * S3: the bucket holds bytes of md5 ARGV[5] for part ARGV[3], added with md5 ARGV[4] (a client PUT it
 * again after adding it; Ferry does not see PUTs to the bucket). While UPLOADING, and if the part
 * is still added with ARGV[4], it is missing again (its stored md5 is now ARGV[5], as add-part
 * would find; '' if it has none): → {Replaced.missing}; → {frozen, state} once complete was called; {unchanged} if
 * the part moved on meanwhile; {noUpload}.
 */
export const partReplaced3 = lua(
  'partReplaced3',
  `${prelude}${partChanges}
if not state then return {-1} end
if state ~= 'UPLOADING' then return {-2, state} end
local n = tonumber(ARGV[3])
if redis.call('HGET', KEYS[1], 's:' .. ARGV[3]) ~= ARGV[4] then return {0} end
partChanges(n)
redis.call('SETRANGE', KEYS[2], n - 1, '0')
if ARGV[5] == '' then redis.call('HDEL', KEYS[1], 's:' .. ARGV[3]) else redis.call('HSET', KEYS[1], 's:' .. ARGV[3], ARGV[5]) end
touch()
return {1}`,
);

/** The answers of the scripts above that can end in more than one way. */
export const Created = { created: 1, existed: 0 } as const;
export const BeginPart = { begun: 1, noUpload: -1, frozen: -2, held: -3 } as const;
export const RenewPart = { renewed: 1, lost: 0 } as const;
export const EndPart = { ended: 1, lost: 0, noUpload: -1 } as const;
export const AddPart = { added: 1, noUpload: -1, frozen: -2, putInProgress: -3, noBytes: -4, md5Differs: -5 } as const;
export const Complete = { ok: 1, noUpload: -1, missing: -4 } as const;
/** update2 and completeAsDuplicate2. */
export const Changed = { done: 1, otherState: 0 } as const;
export const Expire = { expired: 1, gone: 0, active: -1, assembling: -2 } as const;
export const Swap = { swapped: 1, differs: 0 } as const;
export const Deleted = { deleted: 1, otherState: 0 } as const;
export const DigestRound = { round: 1, released: 2, nothing: 0, noUpload: -1, settled: -2, busy: -3, lost: -4, stale: -5 } as const;
export const Renewed = { renewed: 1, lost: 0 } as const;
export const Replaced = { missing: 1, unchanged: 0, noUpload: -1, frozen: -2 } as const;
