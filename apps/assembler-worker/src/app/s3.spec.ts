import { TestS3, startTestS3 } from '@ferry/testing';
import { WorkerContext, WorkerHarness, itExpiresObjects, itRemovesIdleUploads, startWorker } from '../testing/worker.harness';

/** The worker's expiry and collection jobs with FERRY_STORAGE=s3: the same jobs, the bucket's objects. */
describe('assembler-worker on S3 storage (s3rver, real Redis and HTTP)', () => {
  let s3: TestS3;
  let h: WorkerHarness;

  beforeAll(async () => {
    s3 = await startTestS3('worker-bucket');
    h = await startWorker(s3.env);
  });

  afterAll(async () => {
    await h?.close();
    await s3?.stop().catch(() => undefined);
  });

  const ctx: WorkerContext = () => h;

  itRemovesIdleUploads(ctx);
  itExpiresObjects(ctx);

  it('reports itself not ready when the bucket cannot be reached', async () => {
    expect((await fetch(`${h.base}/readyz`)).status).toBe(200);
    await s3.stop();
    const ready = await fetch(`${h.base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ code: 'UNAVAILABLE', message: 'redis: ok, storage: unavailable' });
  });
});
