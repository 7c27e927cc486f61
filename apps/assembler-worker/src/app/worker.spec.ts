import type { INestApplication } from '@nestjs/common';
import type { FerryConfig } from '@ferry/config';
import { REDIS, STORAGE } from '@ferry/core';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Catalog } from '@ferry/catalog';
import { AssemblyQueue, FileHandles, MultipartStore, MultipartUpload, requestDigest } from '@ferry/multipart';
import { Redis, RedisKeys, createRedis } from '@ferry/redis';
import { objectSessionId } from '@ferry/objects';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { TempDir, eventually, md5Hex, patternBytes, sha256Hex, waitFor } from '@ferry/testing';
import {
  WorkerContext,
  WorkerHarness,
  afterExpiryRuns,
  itExpiresObjects,
  itRemovesIdleUploads,
  startWorker,
} from '../testing/worker.harness';

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

  /**
   * Makes a staging file look an hour old. An `orphan` (no upload owns it) may be swept already: the
   * sweep takes one on its own 600 ms after its last write, and a busy machine gets there first.
   */
  function backdate(id: string, orphan = false): void {
    const old = new Date(Date.now() - 3_600_000);
    try {
      utimesSync(join(data.path, 'staging', id), old, old);
    } catch (err) {
      if (!orphan || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

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
    const request = {
      fileName: 'w.bin',
      contentType: 'text/plain',
      contentMD5Hex: md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: 5 * 1024 * 1024,
    };
    await store.create('mp_worker1', 'dev', requestDigest(request), request);
    // the part is PUT as the multipart API does it: under its lease, renewing the upload's activity
    // while the bytes are written (however long that takes, the upload never looks idle)
    const lease = await store.beginPart('mp_worker1', 1);
    const renew = setInterval(() => void store.renewPart(lease), 200);
    try {
      const file = await storage.openStagingForParts('mp_worker1', content.length);
      await file.write(content, 0);
      await file.sync();
      await file.close();
    } finally {
      clearInterval(renew);
    }
    await store.endPart(lease, md5Hex(content));
    expect(await store.addPart('mp_worker1', 1, md5Hex(content))).toEqual({ ok: true });
    expect(await store.complete('mp_worker1')).toEqual({ state: 'ASSEMBLING' });
    const producer = createRedis(config.redis.url, 'producer');
    const queue = new AssemblyQueue(producer, app.get(RedisKeys).bullPrefix());
    // read as it completes: a completed upload is idle from then on, and the job removes it 600 ms later
    let done: MultipartUpload | undefined;
    try {
      await queue.ensure('mp_worker1');
      await queue.ensure('mp_worker1'); // idempotent
      await waitFor('the assembly of mp_worker1 to complete', async () => (done = await store.get('mp_worker1'))?.state === 'COMPLETED');
    } finally {
      await queue.close();
      await producer.quit();
    }
    expect(done).toMatchObject({ state: 'COMPLETED', resultFileHandleId: expect.stringMatching(/^\d+$/) });
    expect(await storage.blobSize(sha256Hex(content))).toBe(content.length);
    // counted once the assembly job settles, a moment after the state changed
    await eventually(async () =>
      expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/ferry_assemblies_total\{outcome="COMPLETED"\} 1/),
    );
  });

  it('lets an upload whose assembly failed for good expire (unless completed again), rather than stay ASSEMBLING forever', async () => {
    const store = app.get(MultipartStore);
    const storage = app.get<Storage>(STORAGE);
    const content = patternBytes(64 * 1024, 77);
    const request = {
      fileName: 'f.bin',
      contentType: 'x/y',
      contentMD5Hex: md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: 5 << 20,
    };
    // publishing its blob fails every time: a file where the blob's directory must go
    const sha256 = sha256Hex(content);
    mkdirSync(join(data.path, 'blobs', 'sha256'), { recursive: true });
    writeFileSync(join(data.path, 'blobs', 'sha256', sha256.slice(0, 2)), 'in the way');
    const producer = createRedis(config.redis.url, 'producer');
    const queue = new AssemblyQueue(producer, app.get(RedisKeys).bullPrefix(), undefined, { attempts: 2, backoffMs: 10 });
    const session = (id: string) => app.get(RedisKeys).upload(id);
    try {
      for (const id of ['mp_gives_up', 'mp_revived']) {
        await store.create(id, 'dev', `${id}-request`, request);
        const lease = await store.beginPart(id, 1);
        const file = await storage.openStagingForParts(id, content.length);
        await file.write(content, 0);
        await file.sync();
        await file.close();
        await store.endPart(lease, md5Hex(content));
        expect(await store.addPart(id, 1, md5Hex(content))).toEqual({ ok: true });
        expect(await store.complete(id)).toEqual({ state: 'ASSEMBLING' });
      }
      await queue.ensure('mp_gives_up');
      // both attempts fail; the upload, still ASSEMBLING, is no longer pinned: a candidate for expiry again...
      await waitFor('the assembly to give up', async () => (await app.get<Redis>(REDIS).hget(session('mp_gives_up'), 'pinned')) === '0');
      // ...and expires with its staged parts, as an abandoned upload does
      await waitFor('the given-up upload to expire', async () => !(await store.exists('mp_gives_up')));
      expect(await storage.stagingSize('mp_gives_up')).toBeUndefined();
      // completed again after its job gave up (as a client polling complete does): it waits for the
      // revived job, however long, and no longer expires
      await store.assemblyGaveUp('mp_revived');
      expect(await store.complete('mp_revived')).toEqual({ state: 'ASSEMBLING' });
      expect(await app.get(SessionStore).beginExpiry('mp_revived', Date.now() + 3_600_000)).toBe('pinned');
      expect(await store.stateOf('mp_revived')).toBe('ASSEMBLING');
    } finally {
      rmSync(join(data.path, 'blobs', 'sha256', sha256.slice(0, 2)), { force: true });
      await queue.close();
      await producer.quit();
    }
  });

  it('expires idle multipart uploads with their staged parts and request entry, never one being written or assembled', async () => {
    const store = app.get(MultipartStore);
    const storage = app.get<Storage>(STORAGE);
    const request = { fileName: 'i.bin', contentType: 'x/y', contentMD5Hex: md5Hex('x'), fileSizeBytes: 10, partSizeBytes: 10 };
    // each upload that must stay takes its protected state as soon as it exists, before the job could
    // find it idle: one with a part being PUT (the PUT renews its activity)...
    await store.create('mp_busy', 'dev', 'mp_busy-request', request);
    const lease = await store.beginPart('mp_busy', 1);
    const renew = setInterval(() => void store.renewPart(lease), 200);
    const snapshots = { live: MultipartStore.snapshotId('mp_busy'), orphan: MultipartStore.snapshotId('mp_gone') };
    try {
      // ...and one completed by its client (every part acknowledged) and waiting for a worker, however long
      await store.create('mp_queued', 'dev', 'mp_queued-request', request);
      await store.endPart(await store.beginPart('mp_queued', 1), md5Hex('x'));
      expect(await store.addPart('mp_queued', 1, md5Hex('x'))).toEqual({ ok: true });
      expect(await store.complete('mp_queued')).toEqual({ state: 'ASSEMBLING' });
      // the idle one last: when it has gone idle, the two others have been idle candidates as long
      await store.create('mp_idle', 'dev', 'mp_idle-request', request);
      expect((await store.swapRequest('dev', 'mp_idle-request', '', 'mp_idle')).ok).toBe(true);
      for (const id of ['mp_idle', 'mp_busy', 'mp_queued']) await (await storage.openStagingForParts(id, 10)).close();
      // the staging file of the busy upload looks old: the orphan sweep must still leave it alone, and
      // a snapshot of its parts (S3 assembly) too; a snapshot of an upload that is gone is swept
      for (const id of Object.values(snapshots)) await (await storage.openStagingForParts(id, 10)).close();
      for (const id of ['mp_busy', snapshots.live]) backdate(id);
      backdate(snapshots.orphan, true);
      // the job removes the upload (and its request entry), then its staged parts: wait for both
      await waitFor(
        'the idle upload and its staged parts to be removed',
        async () => !(await store.exists('mp_idle')) && (await storage.stagingSize('mp_idle')) === undefined,
      );
      await waitFor('the orphaned snapshot to be swept', async () => (await storage.stagingSize(snapshots.orphan)) === undefined);
      // and the others stay through several more runs
      await afterExpiryRuns(h, 3);
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
    // pinned while it waits: never idle, looked at again one lifetime later (however many wait, idle
    // uploads behind them still expire)...
    const sessions = app.get(SessionStore);
    expect(await sessions.beginExpiry('mp_queued', Date.now() + 3_600_000)).toBe('pinned');
    // ...until its assembly settles it: then it expires as any upload does
    expect(await store.updateIf('mp_queued', 'ASSEMBLING', { failureReason: 'test' }, 'FAILED')).toBe(true);
    expect(await sessions.beginExpiry('mp_queued', Date.now() + 3_600_000)).toBe('expiring');
    expect(await storage.stagingSize(snapshots.live)).toBe(10);
    expect(await storage.stagingSize(snapshots.orphan)).toBeUndefined();
    await store.abortPart(lease);
  });

  it('expires an upload whose start died in its dedup with the handle that start made and gave no one', async () => {
    const store = app.get(MultipartStore);
    const handles = app.get(FileHandles);
    const content = Buffer.from('deduplicated content');
    const request = {
      fileName: 'd.bin',
      contentType: 'x/y',
      contentMD5Hex: md5Hex(content),
      fileSizeBytes: content.length,
      partSizeBytes: 5 << 20,
    };
    const sha256 = sha256Hex(content);
    await app.get<Storage>(STORAGE).putBlob(content, sha256);
    // what the start did before its process was killed: its upload, the dedup's handle made, not yet given out
    await store.create('mp_dedup_died', 'dev', 'mp_dedup_died-request', request);
    const handleId = (await store.claimDedupHandle('mp_dedup_died', await handles.allocateId())) as string;
    await handles.claimContent(handleId, sha256);
    await handles.create(
      handleId,
      { fileName: 'd.bin', contentType: 'x/y', owner: 'dev' },
      { size: content.length, sha256, md5: md5Hex(content) },
    );
    await waitFor('the upload to expire', async () => !(await store.exists('mp_dedup_died')));
    // (its catalog object goes first: once the record is gone, so is the object)
    await waitFor('its unused handle to be removed', async () => (await handles.get(handleId)) === undefined);
    expect(await app.get(Catalog).get(`fileHandle/${handleId}`)).toBeUndefined();
  });

  it('deletes an upload for forceRestart only while it is still UPLOADING (a complete elsewhere wins)', async () => {
    const store = app.get(MultipartStore);
    const request = { fileName: 'f.bin', contentType: 'x/y', contentMD5Hex: md5Hex('x'), fileSizeBytes: 10, partSizeBytes: 10 };
    // each upload is used as soon as it exists: an UPLOADING one left untouched goes idle after 600 ms
    await store.create('mp_restart_b', 'dev', 'mp_restart_b-request', request);
    await store.endPart(await store.beginPart('mp_restart_b', 1), md5Hex('x'));
    await store.addPart('mp_restart_b', 1, md5Hex('x'));
    expect(await store.complete('mp_restart_b')).toEqual({ state: 'ASSEMBLING' });
    expect(await store.deleteIf('mp_restart_b', 'UPLOADING')).toBe(false);
    expect(await store.stateOf('mp_restart_b')).toBe('ASSEMBLING');
    await store.create('mp_restart_a', 'dev', 'mp_restart_a-request', request);
    expect(await store.deleteIf('mp_restart_a', 'UPLOADING')).toBe(true);
    expect(await store.exists('mp_restart_a')).toBe(false);
  });

  itExpiresObjects(ctx);

  it('sweeps orphaned object-upload staging but not that of an upload still alive', async () => {
    const storage = app.get<Storage>(STORAGE);
    const sessions = app.get(SessionStore);
    const id = objectSessionId('some/name');
    const writing = objectSessionId('other/name');
    for (const [sid, name] of [
      [id, 'some/name'],
      [writing, 'other/name'],
    ]) {
      await sessions.getOrCreate({ id: sid, name, protocol: 'object', owner: 'dev', attributes: { uploadId: 'u' }, lifetimeMs: 600_000 });
    }
    // a PUT stored its bytes (fence 1), a second one replaced them and its process died (fence 2),
    // a third one took over and stored its bytes (fence 3); another upload's PUT is writing (fence 1)
    await sessions.record(await sessions.acquireLease(id, 'takeover'), 5, { sha256: sha256Hex('bytes') });
    await sessions.acquireLease(id, 'takeover');
    await sessions.record(await sessions.acquireLease(id, 'takeover'), 5, { sha256: sha256Hex('bytes') });
    await sessions.acquireLease(writing, 'takeover');
    const staging = (fence: number) => `${id}_${fence}`;
    // ...and a staging of an upload whose session is gone, and a direct putUrl target no upload names
    const gone = `${objectSessionId('another/name')}_1`;
    const direct = `${id}_dunknown`;
    const ids = [staging(1), staging(2), staging(3), `${writing}_1`, gone, direct];
    for (const stagingId of ids) {
      const f = await storage.openStaging(stagingId, 0);
      await f.write(Buffer.from('bytes'), 0);
      await f.close();
      backdate(stagingId);
    }
    const dead = [staging(1), staging(2), gone, direct];
    await waitFor('the orphaned object staging to be swept', async () => {
      for (const stagingId of dead) if ((await storage.stagingSize(stagingId)) !== undefined) return false;
      return true;
    });
    // a whole run begun since has examined the live ones too (as old) and left them
    await afterExpiryRuns(h);
    // the recorded PUT's bytes (fence 3) and the writer in progress stay
    expect(await storage.stagingSize(staging(3))).toBe(5);
    expect(await storage.stagingSize(`${writing}_1`)).toBe(5);
  });
});
