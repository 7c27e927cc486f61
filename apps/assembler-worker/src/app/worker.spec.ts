import type { INestApplication } from '@nestjs/common';
import type { FerryConfig } from '@ferry/config';
import { REDIS, STORAGE } from '@ferry/core';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { AssemblyQueue, MultipartStore, requestDigest } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { TempDir, md5Hex, patternBytes, sha256Hex } from '@ferry/testing';
import { WorkerContext, WorkerHarness, itExpiresObjects, itRemovesIdleUploads, startWorker, until } from '../testing/worker.harness';

describe('assembler-worker (real Redis, disk and HTTP)', () => {
  let h: WorkerHarness;
  let data: TempDir;
  let config: FerryConfig;
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    h = await startWorker();
    ({ config, app, base, data } = h);
  });

  const ctx: WorkerContext = () => h;

  afterAll(async () => {
    await h.close();
  });

  it('serves liveness, readiness and Prometheus metrics', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok', redis: 'ok', storage: 'ok' });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('ferry_uploads_expired_total');
    expect(metrics).toMatch(/^ferry_queue_jobs\{queue="assembly",state="waiting"\} \d+$/m);
    expect(metrics).toMatch(/^ferry_queue_jobs\{queue="maintenance",state="(delayed|waiting|active|completed)"\} [1-9]\d*$/m); // the scheduled expiry job
    expect(metrics).toContain('ferry_process_cpu_seconds_total');
  });

  itRemovesIdleUploads(ctx);

  it('assembles a completed multipart upload from the queue and publishes one file handle', async () => {
    const store = app.get(MultipartStore);
    const storage = app.get<Storage>(STORAGE);
    const content = patternBytes(3 * 1024 * 1024 + 5, 3);
    const request = { fileName: 'w.bin', contentType: 'text/plain', contentMD5Hex: md5Hex(content), fileSizeBytes: content.length, partSizeBytes: 5 * 1024 * 1024 };
    await store.create('mp_worker1', 'dev', requestDigest(request), request);
    const file = await storage.openStagingForParts('mp_worker1', content.length);
    await file.write(content, 0);
    await file.sync();
    await file.close();
    const lease = await store.beginPart('mp_worker1', 1);
    await store.endPart(lease, md5Hex(content));
    expect(await store.addPart('mp_worker1', 1, md5Hex(content))).toEqual({ ok: true });
    expect(await store.complete('mp_worker1')).toEqual({ state: 'ASSEMBLING' });
    const producer = createRedis(config.redis.url, 'producer');
    const queue = new AssemblyQueue(producer, app.get(RedisKeys).bullPrefix());
    try {
      await queue.ensure('mp_worker1');
      await queue.ensure('mp_worker1'); // idempotent
      await until(async () => (await store.get('mp_worker1'))?.state === 'COMPLETED');
    } finally {
      await queue.close();
      await producer.quit();
    }
    const done = await store.get('mp_worker1');
    expect(done).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.stringMatching(/^\d+$/) });
    expect(await storage.blobSize(sha256Hex(content))).toBe(content.length);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/ferry_assemblies_total\{outcome="COMPLETED"\} 1/);
  });

  it('expires idle multipart uploads with their staged parts and request entry, never one being written or assembled', async () => {
    const store = app.get(MultipartStore);
    const storage = app.get<Storage>(STORAGE);
    const request = { fileName: 'i.bin', contentType: 'x/y', contentMD5Hex: md5Hex('x'), fileSizeBytes: 10, partSizeBytes: 10 };
    for (const id of ['mp_idle', 'mp_busy', 'mp_queued']) {
      await store.create(id, 'dev', `${id}-request`, request);
      const f = await storage.openStagingForParts(id, 10);
      await f.close();
    }
    expect((await store.swapRequest('dev', 'mp_idle-request', '', 'mp_idle')).ok).toBe(true);
    // completed by its client (every part acknowledged) and waiting for a worker, however long
    await store.endPart(await store.beginPart('mp_queued', 1), md5Hex('x'));
    expect(await store.addPart('mp_queued', 1, md5Hex('x'))).toEqual({ ok: true });
    expect(await store.complete('mp_queued')).toEqual({ state: 'ASSEMBLING' });
    const lease = await store.beginPart('mp_busy', 1);
    // the staging file of the busy upload looks old: the orphan sweep must still leave it alone, and
    // a snapshot of its parts (S3 assembly) too; a snapshot of an upload that is gone is swept
    const snapshots = { live: MultipartStore.snapshotId('mp_busy'), orphan: MultipartStore.snapshotId('mp_gone') };
    for (const id of Object.values(snapshots)) await (await storage.openStagingForParts(id, 10)).close();
    const old = new Date(Date.now() - 3_600_000);
    for (const id of ['mp_busy', ...Object.values(snapshots)]) utimesSync(join(data.path, 'staging', id), old, old);
    const renew = setInterval(() => void store.renewPart(lease), 200);
    try {
      await until(async () => !(await store.exists('mp_idle')));
      await new Promise((r) => setTimeout(r, 800));
    } finally {
      clearInterval(renew);
    }
    expect(await store.exists('mp_idle')).toBe(false);
    expect(await storage.stagingSize('mp_idle')).toBeUndefined();
    expect(await store.uploadForRequest('dev', 'mp_idle-request')).toBeUndefined();
    expect(await store.exists('mp_busy')).toBe(true);
    expect(await storage.stagingSize('mp_busy')).toBe(10);
    expect(await store.stateOf('mp_queued')).toBe('ASSEMBLING');
    expect(await storage.stagingSize('mp_queued')).toBe(10);
    // out of the candidates while it waits (however many wait, idle uploads behind them still expire)
    const activity = app.get(RedisKeys).multipartByActivity();
    expect(await app.get<Redis>(REDIS).zscore(activity, 'mp_queued')).toBeNull();
    // and back once its assembly settles it
    expect(await store.updateIf('mp_queued', 'ASSEMBLING', { state: 'FAILED', failureReason: 'test' })).toBe(true);
    expect(await app.get<Redis>(REDIS).zscore(activity, 'mp_queued')).not.toBeNull();
    expect(await storage.stagingSize(snapshots.live)).toBe(10);
    expect(await storage.stagingSize(snapshots.orphan)).toBeUndefined();
    await store.abortPart(lease);
  });

  it('deletes an upload for forceRestart only while it is still UPLOADING (a complete elsewhere wins)', async () => {
    const store = app.get(MultipartStore);
    const request = { fileName: 'f.bin', contentType: 'x/y', contentMD5Hex: md5Hex('x'), fileSizeBytes: 10, partSizeBytes: 10 };
    for (const id of ['mp_restart_a', 'mp_restart_b']) await store.create(id, 'dev', `${id}-request`, request);
    await store.endPart(await store.beginPart('mp_restart_b', 1), md5Hex('x'));
    await store.addPart('mp_restart_b', 1, md5Hex('x'));
    expect(await store.complete('mp_restart_b')).toEqual({ state: 'ASSEMBLING' });
    expect(await store.deleteIf('mp_restart_b', 'UPLOADING')).toBe(false);
    expect(await store.stateOf('mp_restart_b')).toBe('ASSEMBLING');
    expect(await store.deleteIf('mp_restart_a', 'UPLOADING')).toBe(true);
    expect(await store.exists('mp_restart_a')).toBe(false);
  });

  itExpiresObjects(ctx);

  it('sweeps orphaned object-upload staging but not that of an upload still alive', async () => {
    const storage = app.get<Storage>(STORAGE);
    const redis = app.get<Redis>(REDIS);
    for (const id of ['ob_live', 'ob_dead']) {
      const f = await storage.openStaging(id, 0);
      await f.write(Buffer.from('bytes'), 0);
      await f.close();
      const old = new Date(Date.now() - 3_600_000);
      utimesSync(join(data.path, 'staging', id), old, old);
    }
    await redis.set(app.get(RedisKeys).objectStaging('ob_live'), 'some/name', 'PX', 60_000);
    await until(async () => (await storage.stagingSize('ob_dead')) === undefined);
    expect(await storage.stagingSize('ob_dead')).toBeUndefined();
    expect(await storage.stagingSize('ob_live')).toBe(5);
  });
});
