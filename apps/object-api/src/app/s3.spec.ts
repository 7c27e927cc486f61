import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TestS3, patternBytes, sha256Hex, startTestS3 } from '@ferry/testing';
import { ObjectHarness, startObjectApi } from '../testing/object.harness';

const run = promisify(execFile);
const slugid = () => Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex').toString('base64url');

/** object-api with FERRY_STORAGE=s3: putUrl and getUrl name the bucket itself. */
describe('object-api on S3 storage (s3rver, real Redis and HTTP)', () => {
  let s3: TestS3;
  let h: ObjectHarness;
  const expires = new Date(Date.now() + 86_400_000).toISOString();

  beforeAll(async () => {
    s3 = await startTestS3('object-bucket');
    h = await startObjectApi(s3.env);
  });

  afterAll(async () => {
    await h?.close();
    await s3?.stop();
  });

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${h.base}/api/object/v1${path}`, {
      method,
      headers: { authorization: 'Bearer uploader-token', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: 'manual',
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  it('negotiates a putUrl of the bucket, verifies the bytes there at finish, and hands out getUrls of the bucket', async () => {
    const data = patternBytes(3 * 1024 * 1024 + 5, 51);
    const name = 's3/direct.bin';
    const uploadId = slugid();
    const create = {
      projectId: 'proj/a',
      uploadId,
      expires,
      proposedUploadMethods: { putUrl: { contentType: 'application/x-test', contentLength: data.length } },
    };
    const first = (await call('PUT', `/upload/${encodeURIComponent(name)}`, create)).body['uploadMethod'] as {
      putUrl: { url: string; headers: Record<string, string> };
    };
    expect(first.putUrl.url.startsWith(`${s3.endpoint}/${s3.bucket}/staging/`)).toBe(true);
    // nothing PUT yet: nothing to finish
    expect((await call('POST', `/finish-upload/${encodeURIComponent(name)}`, { projectId: 'proj/a', uploadId })).status).toBe(409);
    // a wrong body first, then (with a renewed URL naming the same staging object) the right one
    const { 'Content-Length': _length, ...headers } = first.putUrl.headers;
    expect((await fetch(first.putUrl.url, { method: 'PUT', headers, body: Buffer.alloc(data.length, 7) })).status).toBe(200);
    const bad = await call('POST', `/finish-upload/${encodeURIComponent(name)}`, {
      projectId: 'proj/a',
      uploadId,
      hashes: { sha256: sha256Hex(data) },
    });
    expect([bad.status, bad.body['message']]).toEqual([400, expect.stringMatching(/sha256 is .* not the declared/)]);
    // what was verified was a copy (so a PUT racing the finish cannot change it), and it is gone
    expect(await s3.keys('staging/')).toHaveLength(1);
    const renewed = (await call('PUT', `/upload/${encodeURIComponent(name)}`, create)).body['uploadMethod'] as { putUrl: { url: string } };
    expect(renewed.putUrl.url.split('?')[0]).toBe(first.putUrl.url.split('?')[0]);
    expect((await fetch(renewed.putUrl.url, { method: 'PUT', headers, body: data })).status).toBe(200);
    expect(
      (
        await call('POST', `/finish-upload/${encodeURIComponent(name)}`, {
          projectId: 'proj/a',
          uploadId,
          hashes: { sha256: sha256Hex(data) },
        })
      ).status,
    ).toBe(200);
    expect(await s3.keys('staging/')).toEqual([]);
    const download = (await call('PUT', `/start-download/${encodeURIComponent(name)}`, { acceptDownloadMethods: { getUrl: true } }))
      .body as { url: string; hashes: { sha256: string } };
    expect(download.url.startsWith(`${s3.endpoint}/${s3.bucket}/blobs/sha256/`)).toBe(true);
    expect(download.hashes.sha256).toBe(sha256Hex(data));
    const got = await fetch(download.url);
    expect(got.headers.get('content-type')).toBe('application/x-test');
    expect(sha256Hex(Buffer.from(await got.arrayBuffer()))).toBe(sha256Hex(data));
    const redirect = await fetch(`${h.base}/api/object/v1/download/${encodeURIComponent(name)}`, {
      headers: { authorization: 'Bearer uploader-token' },
      redirect: 'manual',
    });
    expect(redirect.status).toBe(303);
    expect(redirect.headers.get('location')?.startsWith(`${s3.endpoint}/${s3.bucket}/blobs/`)).toBe(true);
  });

  it('refuses at finish bytes whose length is not the declared contentLength', async () => {
    const name = 's3/short.bin';
    const uploadId = slugid();
    const create = {
      projectId: 'proj/a',
      uploadId,
      expires,
      proposedUploadMethods: { putUrl: { contentType: 'x/y', contentLength: 100 } },
    };
    const put = ((await call('PUT', `/upload/${encodeURIComponent(name)}`, create)).body['uploadMethod'] as { putUrl: { url: string } })
      .putUrl;
    // s3rver does not enforce the signed Content-Length (S3 does); the finish still checks it
    expect((await fetch(put.url, { method: 'PUT', headers: { 'Content-Type': 'x/y' }, body: Buffer.alloc(99) })).status).toBe(200);
    const r = await call('POST', `/finish-upload/${encodeURIComponent(name)}`, { projectId: 'proj/a', uploadId });
    expect([r.status, r.body['message']]).toEqual([409, expect.stringMatching(/99 bytes, not the declared contentLength 100/)]);
    expect((await s3.keys('staging/')).filter((k) => k.endsWith('/00000000'))).toHaveLength(1);
    expect((await call('GET', `/metadata/${encodeURIComponent(name)}`)).status).toBe(404);
  });

  it('works with the unmodified Taskcluster client, its bytes going to and from the bucket', async () => {
    const script = join(__dirname, '..', '..', 'test', 'tc-client.mjs');
    for (const [name, size] of [
      ['tc/s3 five', 5],
      ['tc/s3-three-mib', 3 * 1024 * 1024],
    ] as const) {
      const { stdout } = await run(process.execPath, [script, h.base, 'uploader', 'uploader-token', 'proj/tc', name, String(size)]);
      const out = JSON.parse(stdout) as { uploadedSha256: string; downloadedSha256: string };
      expect(out.downloadedSha256).toBe(out.uploadedSha256);
    }
  });
});
