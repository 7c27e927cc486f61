/**
 * The REAPI cache bounded by FERRY_CACHE_MAX_BYTES, over real sockets: what does not fit makes room
 * by evicting the least recently used, an action result whose outputs were evicted is a miss (a
 * build reruns the action), and a cache full of what it may not evict refuses writes with
 * RESOURCE_EXHAUSTED (507 on Bazel's HTTP cache), keeping nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { BoundedCache, CacheIndex } from '@ferry/cache';
import { REDIS } from '@ferry/core';
import { Redis, RedisKeys } from '@ferry/redis';
import { Catalog, casObjectName } from '@ferry/catalog';
import type { BatchUpdateBlobsResponse__Output } from '@ferry/protocol';
import {
  ReapiClients,
  bearer,
  chunkedRequests,
  expectGrpcCode,
  queryWriteStatus,
  reapiClients,
  sleep,
  unaryCall,
  writeRequests,
} from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const digestOf = (b: Buffer) => ({ hash: sha(b), size_bytes: b.length });
const KiB = 1024;

describe('the bounded REAPI cache (FERRY_CACHE_MAX_BYTES)', () => {
  let h: IngestHarness;
  let r: ReapiClients;

  afterEach(async () => {
    r?.close();
    await h?.close();
  });

  const start = async (env: Record<string, string>) => {
    h = await startIngest({ FERRY_CACHE_MAX_BYTES: String(100 * KiB), ...env });
    r = reapiClients(h.address);
  };
  const missing = async (blobs: Buffer[]) =>
    (
      await unaryCall<{ missing_blob_digests: { hash: string }[] }>(
        r.cas,
        'FindMissingBlobs',
        { instance_name: '', blob_digests: blobs.map(digestOf) },
        bearer(),
      )
    ).missing_blob_digests.map((d) => d.hash);
  /** Whether each blob is still in the cache (its catalog name; looking does not use it). */
  const held = async (blobs: Buffer[]) =>
    Promise.all(blobs.map(async (b) => (await h.app.get(Catalog).get(casObjectName(sha(b), b.length))) !== undefined));
  const batchUpdate = (blobs: Buffer[]) =>
    unaryCall<BatchUpdateBlobsResponse__Output>(
      r.cas,
      'BatchUpdateBlobs',
      { instance_name: '', requests: blobs.map((b) => ({ digest: digestOf(b), data: b })) },
      bearer(),
    );

  it('stays within its cap: a write makes room by evicting the least recently used, on every face', async () => {
    await start({ FERRY_CACHE_MIN_AGE_MS: '0' });
    const blobs = Array.from({ length: 6 }, () => randomBytes(30 * KiB));
    // (uses a few ms apart: the LRU orders by the millisecond)
    await batchUpdate([blobs[0]]);
    await sleep(5);
    await writeRequests(h.client, chunkedRequests(`uploads/u1/blobs/${sha(blobs[1])}/${blobs[1].length}`, blobs[1]));
    await sleep(5);
    await batchUpdate([blobs[2]]);
    await sleep(5);
    // an action result referring to blob 0 and blob 2; blob 0 used again (FindMissingBlobs)
    const action = digestOf(randomBytes(10));
    const outputs = [0, 2].map((i) => ({ path: `out${i}`, digest: digestOf(blobs[i]) }));
    await unaryCall(
      r.actionCache,
      'UpdateActionResult',
      { instance_name: '', action_digest: action, action_result: { output_files: outputs } },
      bearer(),
    );
    await sleep(5);
    expect(await missing([blobs[0]])).toEqual([]);
    await sleep(5);
    // 90 KiB + the result held: the next blob does not fit under 100 KiB: the least recently used (blob 1) goes
    const res = await fetch(`${h.httpCache}/cas/${sha(blobs[3])}`, {
      method: 'PUT',
      body: blobs[3],
      headers: { authorization: 'Bearer dev-secret' },
    });
    expect(res.status).toBe(200);
    // (looked at in the catalog: a FindMissingBlobs would use them again)
    expect(await held(blobs.slice(0, 4))).toEqual([true, false, true, true]);
    const cache = h.app.get(BoundedCache);
    expect(await cache.index.bytes()).toBeLessThanOrEqual(100 * KiB);
    // two more: blob 2, then the action result, then blob 0 (used after the result) go
    await sleep(5);
    await batchUpdate([blobs[4]]);
    await sleep(5);
    await batchUpdate([blobs[5]]);
    expect(await cache.index.bytes()).toBeLessThanOrEqual(100 * KiB);
    expect(await held(blobs)).toEqual([false, false, false, true, true, true]);
    expect(await missing(blobs)).toEqual([0, 1, 2].map((i) => sha(blobs[i])));
    await expectGrpcCode(
      unaryCall(r.actionCache, 'GetActionResult', { instance_name: '', action_digest: action }, bearer()),
      grpc.status.NOT_FOUND,
      /no action result/,
    );
    expect((await cache.index.totals()).evicted).toBeGreaterThanOrEqual(3);
  });

  it('counts a blob written again while present as used: the action result that follows will name it', async () => {
    await start({ FERRY_CACHE_MIN_AGE_MS: '0' });
    const blob = randomBytes(10 * KiB);
    const lru = h.app.get(RedisKeys).cacheLru();
    const member = CacheIndex.blobMember(sha(blob), blob.length);
    const usedAt = async () => Number(await h.app.get<Redis>(REDIS).zscore(lru, member));
    await batchUpdate([blob]);
    let last = await usedAt();
    for (const again of [
      () => batchUpdate([blob]),
      () => writeRequests(h.client, chunkedRequests(`uploads/u3/blobs/${sha(blob)}/${blob.length}`, blob)),
      () => fetch(`${h.httpCache}/cas/${sha(blob)}`, { method: 'PUT', body: blob, headers: { authorization: 'Bearer dev-secret' } }),
    ]) {
      await sleep(5);
      await again();
      expect(await usedAt()).toBeGreaterThan(last);
      last = await usedAt();
    }
  });

  it('refuses writes when it is full of entries it may not evict yet, and keeps nothing of them', async () => {
    await start({ FERRY_CACHE_MIN_AGE_MS: '3600000' });
    const held = [randomBytes(45 * KiB), randomBytes(45 * KiB)];
    expect((await batchUpdate(held)).responses.map((x) => x.status?.code)).toEqual([0, 0]);
    const refused = randomBytes(20 * KiB);
    const batch = await batchUpdate([refused]);
    expect(batch.responses[0].status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(batch.responses[0].status?.message).toMatch(/cache is full .* cannot be evicted/);
    const name = `uploads/u2/blobs/${sha(refused)}/${refused.length}`;
    await expectGrpcCode(
      writeRequests(h.client, chunkedRequests(name, refused, { chunk: 4 * KiB })),
      grpc.status.RESOURCE_EXHAUSTED,
      /cache is full/,
    );
    expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: 0, complete: false });
    const put = await fetch(`${h.httpCache}/cas/${sha(refused)}`, {
      method: 'PUT',
      body: refused,
      headers: { authorization: 'Bearer dev-secret' },
    });
    expect(put.status).toBe(507);
    expect(await put.json()).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    expect(await missing([refused, ...held])).toEqual([sha(refused)]);
    // larger than the whole cache: said so
    const huge = randomBytes(101 * KiB);
    expect((await batchUpdate([huge])).responses[0].status?.message).toMatch(/does not fit in the cache/);
  });
});
