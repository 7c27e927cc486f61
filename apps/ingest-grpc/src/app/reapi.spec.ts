import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Catalog } from '@ferry/catalog';
import type {
  ActionResult__Output,
  BatchReadBlobsResponse__Output,
  BatchUpdateBlobsResponse__Output,
  Directory,
  ServerCapabilities__Output,
} from '@ferry/protocol';
import { messageCodec } from '@ferry/protocol';
import {
  ReapiClients,
  bearer,
  chunkedRequests,
  expectGrpcCode,
  queryWriteStatus,
  readBytes,
  reapiClients,
  unaryCall,
  withToolDetails,
  writeRequests,
} from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const digestOf = (b: Buffer) => ({ hash: sha(b), size_bytes: b.length });
const EMPTY = digestOf(Buffer.alloc(0));
const MiB = 1024 * 1024;

describe('REAPI cache services over gRPC (real Redis, disk and sockets)', () => {
  let h: IngestHarness;
  let r: ReapiClients;
  const md = () => bearer();

  beforeAll(async () => {
    h = await startIngest({
      FERRY_REAPI_INSTANCES: ',main,team/ci',
      FERRY_REAPI_MAX_BATCH_BYTES: String(MiB),
      FERRY_CAS_MAX_BLOB_BYTES: String(8 * MiB),
    });
    r = reapiClients(h.address);
  });

  afterAll(async () => {
    r.close();
    await h.close();
  });

  const findMissing = (digests: object[], extra: object = {}) =>
    unaryCall<{ missing_blob_digests: { hash: string; size_bytes: number }[] }>(
      r.cas,
      'FindMissingBlobs',
      { instance_name: 'main', blob_digests: digests, ...extra },
      md(),
    );
  const batchUpdate = (requests: object[], instance = 'main', extra: object = {}) =>
    unaryCall<BatchUpdateBlobsResponse__Output>(r.cas, 'BatchUpdateBlobs', { instance_name: instance, requests, ...extra }, md());
  const batchRead = (digests: object[], instance = 'main') =>
    unaryCall<BatchReadBlobsResponse__Output>(r.cas, 'BatchReadBlobs', { instance_name: instance, digests }, md());
  const getResult = (digest: object, instance = 'main') =>
    unaryCall<ActionResult__Output>(r.actionCache, 'GetActionResult', { instance_name: instance, action_digest: digest }, md());
  const updateResult = (digest: object, result: object, instance = 'main') =>
    unaryCall<ActionResult__Output>(
      r.actionCache,
      'UpdateActionResult',
      { instance_name: instance, action_digest: digest, action_result: result },
      md(),
    );

  describe('Capabilities', () => {
    it('advertises SHA-256, the batch and blob limits, API 2.0 to 2.3, and update_enabled from the scopes', async () => {
      const caps = await unaryCall<ServerCapabilities__Output>(r.capabilities, 'GetCapabilities', { instance_name: 'main' }, md());
      expect(caps.cache_capabilities).toMatchObject({
        digest_functions: ['SHA256'],
        action_cache_update_capabilities: { update_enabled: true },
        max_batch_total_size_bytes: MiB,
        max_cas_blob_size_bytes: 8 * MiB,
      });
      expect(caps.low_api_version).toMatchObject({ major: 2, minor: 0 });
      expect(caps.high_api_version).toMatchObject({ major: 2, minor: 3 });
      expect(caps.execution_capabilities).toMatchObject({ exec_enabled: false });
      await expectGrpcCode(
        unaryCall(r.capabilities, 'GetCapabilities', { instance_name: 'nope' }, md()),
        grpc.status.INVALID_ARGUMENT,
        /unknown instance name "nope"/,
      );
    });
  });

  describe('ContentAddressableStorage', () => {
    it('finds missing blobs; the empty blob is never missing', async () => {
      const stored = randomBytes(100);
      await batchUpdate([{ digest: digestOf(stored), data: stored }]);
      const absent = digestOf(randomBytes(10));
      const res = await findMissing([EMPTY, digestOf(stored), absent, { hash: sha(stored), size_bytes: 99 }]);
      expect(res.missing_blob_digests).toEqual([absent, { hash: sha(stored), size_bytes: 99 }]);
    });

    it('refuses malformed digests, other digest functions and unknown instances', async () => {
      await expectGrpcCode(findMissing([{ hash: 'AB'.repeat(32), size_bytes: 1 }]), grpc.status.INVALID_ARGUMENT, /64 lowercase hex/);
      await expectGrpcCode(findMissing([{ hash: 'ab'.repeat(20), size_bytes: 1 }]), grpc.status.INVALID_ARGUMENT, /SHA-256/);
      await expectGrpcCode(findMissing([{ hash: 'ab'.repeat(32), size_bytes: -1 }]), grpc.status.INVALID_ARGUMENT, /size -1/);
      await expectGrpcCode(findMissing([EMPTY], { digest_function: 'SHA1' }), grpc.status.INVALID_ARGUMENT, /digest function SHA1/);
      await expectGrpcCode(findMissing([EMPTY], { instance_name: 'elsewhere' }), grpc.status.INVALID_ARGUMENT, /unknown instance/);
      await expectGrpcCode(findMissing([EMPTY], { instance_name: 'x/blobs' }), grpc.status.INVALID_ARGUMENT, /reserved segment/);
    });

    it('stores a batch, answering each blob with its own status, and publishes each good blob once', async () => {
      const a = randomBytes(1000);
      const b = randomBytes(2000);
      const res = await batchUpdate([
        { digest: digestOf(a), data: a },
        { digest: digestOf(b), data: Buffer.concat([b.subarray(1), Buffer.from('x')]) }, // corrupted in transit
        { digest: { hash: sha(b), size_bytes: 5 }, data: b }, // wrong size
        { digest: digestOf(b), data: b, compressor: 'ZSTD' },
        { digest: { hash: 'zz', size_bytes: 1 }, data: Buffer.from('z') },
        { digest: EMPTY, data: Buffer.alloc(0) },
      ]);
      expect(res.responses.map((x) => x.status?.code)).toEqual([
        0,
        grpc.status.INVALID_ARGUMENT,
        grpc.status.INVALID_ARGUMENT,
        grpc.status.INVALID_ARGUMENT,
        grpc.status.INVALID_ARGUMENT,
        0,
      ]);
      expect(res.responses[1].status?.message).toMatch(/digest mismatch/);
      expect(res.responses[3].status?.message).toMatch(/not a valid zstd stream/);
      expect((await findMissing([digestOf(a), digestOf(b)])).missing_blob_digests).toEqual([digestOf(b)]);
      // the same blob over ByteStream and in the catalog, shared by every instance
      expect((await readBytes(h.client, `blobs/${sha(a)}/${a.length}`)).data.equals(a)).toBe(true);
      expect((await readBytes(h.client, `team/ci/blobs/${sha(a)}/${a.length}`)).data.equals(a)).toBe(true);
      expect(await h.app.get(Catalog).get(`blobs/${sha(a)}/${a.length}`)).toMatchObject({
        size: a.length,
        protocol: 'reapi-cas',
        project: 'main',
      });
    });

    it('refuses batches over max_batch_total_size_bytes and blobs over max_cas_blob_size_bytes', async () => {
      const big = randomBytes(MiB / 2 + 1);
      await expectGrpcCode(
        batchUpdate([
          { digest: digestOf(big), data: big },
          { digest: digestOf(big), data: big },
        ]),
        grpc.status.INVALID_ARGUMENT,
        /exceeds max_batch_total_size_bytes 1048576; use ByteStream/,
      );
      await expectGrpcCode(
        batchRead([{ hash: sha(big), size_bytes: 2 * MiB }]),
        grpc.status.INVALID_ARGUMENT,
        /max_batch_total_size_bytes/,
      );
      const huge = `uploads/u-${Date.now()}/blobs/${'ab'.repeat(32)}/${9 * MiB}`;
      await expectGrpcCode(
        writeRequests(h.client, chunkedRequests(huge, Buffer.alloc(10), { finish: false })),
        grpc.status.INVALID_ARGUMENT,
        /max_cas_blob_size_bytes/,
      );
    });

    it('reads a batch: data for stored blobs, NOT_FOUND for the others', async () => {
      const a = randomBytes(300);
      await batchUpdate([{ digest: digestOf(a), data: a }]);
      const missing = digestOf(randomBytes(5));
      const res = await batchRead([digestOf(a), missing, EMPTY]);
      expect(res.responses.map((x) => x.status?.code)).toEqual([0, grpc.status.NOT_FOUND, 0]);
      expect(Buffer.from(res.responses[0].data as Buffer).equals(a)).toBe(true);
      expect(res.responses[2].data?.length).toBe(0);
    });

    it('walks a directory tree with GetTree, in pages', async () => {
      const codec = messageCodec<Directory, unknown>('build.bazel.remote.execution.v2.Directory');
      const leaf = codec.encode({ files: [{ name: 'f.txt', digest: EMPTY, is_executable: false }] });
      const mid = codec.encode({ directories: [{ name: 'leaf', digest: digestOf(leaf) }] });
      const other = codec.encode({ files: [{ name: 'g.txt', digest: EMPTY }] });
      const root = codec.encode({
        directories: [
          { name: 'a', digest: digestOf(mid) },
          { name: 'b', digest: digestOf(other) },
        ],
      });
      await batchUpdate([leaf, mid, other, root].map((d) => ({ digest: digestOf(d), data: d })));
      const tree = async (extra: object) => {
        const pages: { directories: unknown[]; next_page_token: string }[] = [];
        for await (const page of r.cas.GetTree({ instance_name: 'main', root_digest: digestOf(root), ...extra }, md())) pages.push(page);
        return pages;
      };
      const whole = await tree({});
      expect(whole).toHaveLength(1);
      expect(whole[0].directories).toHaveLength(4);
      expect(whole[0].next_page_token).toBe('');
      const first = await tree({ page_size: 3 });
      expect(first.map((p) => p.directories.length)).toEqual([3, 1]);
      const resumed = await tree({ page_size: 3, page_token: first[0].next_page_token });
      expect(resumed[0].directories).toEqual(first[1].directories);
      await expectGrpcCode(tree({ root_digest: digestOf(randomBytes(3)) }), grpc.status.NOT_FOUND, /root directory/);
      await expectGrpcCode(tree({ page_token: 'bogus' }), grpc.status.INVALID_ARGUMENT, /page_token/);
    });
  });

  describe('ActionCache', () => {
    it('misses with NOT_FOUND, stores a result, and answers it per instance', async () => {
      const action = digestOf(randomBytes(40));
      await expectGrpcCode(getResult(action), grpc.status.NOT_FOUND);
      const out = randomBytes(64);
      await batchUpdate([{ digest: digestOf(out), data: out }]);
      const result = {
        output_files: [{ path: 'bazel-out/x.o', digest: digestOf(out), is_executable: true }],
        exit_code: 0,
        stdout_raw: Buffer.from('ok'),
      };
      const stored = await updateResult(action, result);
      expect(stored.output_files[0].path).toBe('bazel-out/x.o');
      const got = await getResult(action);
      expect(got.output_files).toEqual([expect.objectContaining({ path: 'bazel-out/x.o', digest: digestOf(out), is_executable: true })]);
      expect(got.stdout_raw.toString()).toBe('ok');
      // instances namespace the action cache (the CAS is shared)
      await expectGrpcCode(getResult(action, 'team/ci'), grpc.status.NOT_FOUND);
      await expectGrpcCode(getResult(action, 'unknown'), grpc.status.INVALID_ARGUMENT, /unknown instance/);
    });

    it('reports a miss when a result refers to blobs that are gone', async () => {
      const action = digestOf(randomBytes(40));
      await updateResult(action, { output_files: [{ path: 'gone', digest: digestOf(randomBytes(9)) }] });
      await expectGrpcCode(getResult(action), grpc.status.NOT_FOUND, /blobs that are gone/);
    });

    it('refuses bad action digests and results', async () => {
      await expectGrpcCode(getResult({ hash: 'xyz', size_bytes: 1 }), grpc.status.INVALID_ARGUMENT, /SHA-256/);
      await expectGrpcCode(
        updateResult(digestOf(randomBytes(4)), { output_files: [{ path: 'p', digest: { hash: 'short', size_bytes: 1 } }] }),
        grpc.status.INVALID_ARGUMENT,
      );
      await expectGrpcCode(
        unaryCall(r.actionCache, 'UpdateActionResult', { instance_name: 'main', action_digest: digestOf(randomBytes(4)) }, md()),
        grpc.status.INVALID_ARGUMENT,
        /action_result is required/,
      );
      await expectGrpcCode(
        updateResult(digestOf(randomBytes(4)), { stdout_raw: randomBytes(MiB + 10) }),
        grpc.status.INVALID_ARGUMENT,
        /keep outputs in the CAS/,
      );
    });
  });

  describe('ByteStream uploads of REAPI names: resuming', () => {
    const bazel = (version: string) => withToolDetails(md(), 'bazel', version);
    const uploadName = (data: Buffer, uuid: string) => `main/uploads/${uuid}/blobs/${sha(data)}/${data.length}`;
    const readBack = async (data: Buffer) => sha((await readBytes(h.client, `blobs/${sha(data)}/${data.length}`)).data);

    it('tells a current client the committed size, and it resumes from there', async () => {
      const data = randomBytes(6 * MiB);
      const name = uploadName(data, 'u-current');
      expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, 4 * MiB), { finish: false }), bazel('7.4.1'))).toBe(
        4 * MiB,
      );
      // no request metadata (most clients), current Bazel, a Bazel development build (no version), other tools
      for (const metadata of [
        md(),
        bazel('7.4.1'),
        bazel('2.2.0'),
        bazel('release 3.7.2'),
        bazel(''),
        withToolDetails(md(), 'reclient', '0.1.0'),
      ]) {
        expect(await queryWriteStatus(h.client, name, metadata)).toEqual({ committed_size: 4 * MiB, complete: false });
      }
      expect(await writeRequests(h.client, chunkedRequests(name, data, { offset: 4 * MiB }), bazel('7.4.1'))).toBe(data.length);
      expect(await queryWriteStatus(h.client, name, bazel('7.4.1'))).toEqual({ committed_size: data.length, complete: true });
      expect(await readBack(data)).toBe(sha(data));
      // an upload Ferry knows nothing of: 0, not NOT_FOUND
      expect(await queryWriteStatus(h.client, uploadName(randomBytes(10), 'u-unknown'))).toEqual({ committed_size: 0, complete: false });
    });

    it('tells Bazel before 2.2 (by its request metadata) 0, and takes its re-send from 0', async () => {
      const data = randomBytes(6 * MiB);
      const name = uploadName(data, 'u-bazel21');
      expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, 4 * MiB), { finish: false }), bazel('2.1.0'))).toBe(
        4 * MiB,
      );
      // Bazel 1.2 to 2.1 fail when told a partial size (a NullPointerException in Chunker.seek)
      for (const version of ['2.1.0', 'release 2.1.0', '2.1.0rc1', '2.0.0', '1.2.1', '0.29.1']) {
        expect(await queryWriteStatus(h.client, name, bazel(version))).toEqual({ committed_size: 0, complete: false });
      }
      // decided per call: the same upload, queried without metadata, is at 4 MiB
      expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: 4 * MiB, complete: false });
      // Bazel 2.1 re-sends everything from 0 in 16 KiB messages: the held bytes are skipped, the blob still verified
      expect(await writeRequests(h.client, chunkedRequests(name, data, { chunk: 16 * 1024 }), bazel('2.1.0'))).toBe(data.length);
      expect(await queryWriteStatus(h.client, name, bazel('2.1.0'))).toEqual({ committed_size: data.length, complete: true });
      expect(await readBack(data)).toBe(sha(data));
    });

    it('ignores malformed request metadata: the caller counts as a client that named no tool', async () => {
      const data = randomBytes(5 * MiB);
      const name = uploadName(data, 'u-malformed');
      const garbage = md();
      garbage.set('build.bazel.remote.execution.v2.requestmetadata-bin', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      const truncated = md();
      const bazel21 = bazel('2.1.0').get('build.bazel.remote.execution.v2.requestmetadata-bin')[0] as Buffer;
      truncated.set('build.bazel.remote.execution.v2.requestmetadata-bin', bazel21.subarray(0, 5));
      const empty = md();
      empty.set('build.bazel.remote.execution.v2.requestmetadata-bin', Buffer.alloc(0));
      expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, 3 * MiB), { finish: false }), garbage)).toBe(3 * MiB);
      for (const metadata of [garbage, truncated, empty]) {
        expect(await queryWriteStatus(h.client, name, metadata)).toEqual({ committed_size: 3 * MiB, complete: false });
      }
      expect(await writeRequests(h.client, chunkedRequests(name, data, { offset: 3 * MiB }), truncated)).toBe(data.length);
      expect(await readBack(data)).toBe(sha(data));
    });

    it('accepts a re-send from any offset up to what it holds, but not one that finishes before it', async () => {
      const other = randomBytes(3 * MiB);
      const second = uploadName(other, 'u-resend-middle');
      expect(await writeRequests(h.client, chunkedRequests(second, other.subarray(0, 2 * MiB), { finish: false }))).toBe(2 * MiB);
      expect(await writeRequests(h.client, chunkedRequests(second, other, { offset: MiB }))).toBe(other.length);
      expect(await readBack(other)).toBe(sha(other));
      const third = randomBytes(2 * MiB);
      const thirdName = uploadName(third, 'u-short');
      await writeRequests(h.client, chunkedRequests(thirdName, third.subarray(0, MiB + 5), { finish: false }));
      await expectGrpcCode(
        writeRequests(h.client, chunkedRequests(thirdName, third.subarray(0, MiB))),
        grpc.status.INVALID_ARGUMENT,
        /before the 1048581 bytes/,
      );
    });

    it('refuses REAPI names of unknown instances', async () => {
      await expectGrpcCode(readBytes(h.client, `elsewhere/blobs/${EMPTY.hash}/0`), grpc.status.INVALID_ARGUMENT, /unknown instance/);
      await expectGrpcCode(
        queryWriteStatus(h.client, `elsewhere/uploads/u/blobs/${EMPTY.hash}/0`),
        grpc.status.INVALID_ARGUMENT,
        /unknown instance/,
      );
    });
  });
});

describe('REAPI scopes', () => {
  let h: IngestHarness;
  let r: ReapiClients;

  beforeAll(async () => {
    h = await startIngest({
      FERRY_CLIENTS: JSON.stringify([
        { clientId: 'ci', accessToken: 'ci-token-1', scopes: ['ferry:write:ci/*', 'ferry:read:ci/*'] },
        { clientId: 'dev1', accessToken: 'dev-token-1', scopes: ['ferry:read:ci/*'] },
      ]),
    });
    r = reapiClients(h.address);
  });

  afterAll(async () => {
    r.close();
    await h.close();
  });

  it('derives update_enabled and every check from ferry:read/write:<instance>/...', async () => {
    const caps = (token: string) =>
      unaryCall<ServerCapabilities__Output>(r.capabilities, 'GetCapabilities', { instance_name: 'ci' }, bearer(token));
    expect((await caps('ci-token-1')).cache_capabilities?.action_cache_update_capabilities?.update_enabled).toBe(true);
    expect((await caps('dev-token-1')).cache_capabilities?.action_cache_update_capabilities?.update_enabled).toBe(false);
    // without credentials (Bazel 2.x): whether anyone may update this instance; a wrong token is refused
    const anonymous = (instance: string) =>
      unaryCall<ServerCapabilities__Output>(r.capabilities, 'GetCapabilities', { instance_name: instance }, new grpc.Metadata());
    expect((await anonymous('ci')).cache_capabilities?.action_cache_update_capabilities?.update_enabled).toBe(true);
    expect((await anonymous('other')).cache_capabilities?.action_cache_update_capabilities?.update_enabled).toBe(false);
    await expectGrpcCode(caps('wrong-token'), grpc.status.UNAUTHENTICATED);
    const blob = randomBytes(10);
    const put = (token: string) =>
      unaryCall<BatchUpdateBlobsResponse__Output>(
        r.cas,
        'BatchUpdateBlobs',
        { instance_name: 'ci', requests: [{ digest: digestOf(blob), data: blob }] },
        bearer(token),
      );
    expect((await put('dev-token-1')).responses[0].status?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await put('ci-token-1')).responses[0].status?.code).toBe(0);
    const action = digestOf(randomBytes(8));
    await expectGrpcCode(
      unaryCall(
        r.actionCache,
        'UpdateActionResult',
        { instance_name: 'ci', action_digest: action, action_result: { exit_code: 0 } },
        bearer('dev-token-1'),
      ),
      grpc.status.PERMISSION_DENIED,
      /ferry:write:ci\/actionResults\//,
    );
    await unaryCall(
      r.actionCache,
      'UpdateActionResult',
      { instance_name: 'ci', action_digest: action, action_result: { exit_code: 3 } },
      bearer('ci-token-1'),
    );
    expect(
      (
        await unaryCall<ActionResult__Output>(
          r.actionCache,
          'GetActionResult',
          { instance_name: 'ci', action_digest: action },
          bearer('dev-token-1'),
        )
      ).exit_code,
    ).toBe(3);
    await expectGrpcCode(
      unaryCall(r.cas, 'FindMissingBlobs', { instance_name: '', blob_digests: [] }, bearer('ci-token-1')),
      grpc.status.PERMISSION_DENIED,
    );
    await expectGrpcCode(
      unaryCall(r.cas, 'FindMissingBlobs', { instance_name: 'ci', blob_digests: [] }, new grpc.Metadata()),
      grpc.status.UNAUTHENTICATED,
    );
  });
});

describe('FERRY_REAPI_ZERO_RESUME', () => {
  /** An unfinished 4 MiB-of-6 REAPI upload on `h`, with what Bazel 7 and Bazel 2.1 send. */
  async function unfinished(h: IngestHarness, uuid: string) {
    const data = randomBytes(6 * MiB);
    const name = `main/uploads/${uuid}/blobs/${sha(data)}/${data.length}`;
    expect(await writeRequests(h.client, chunkedRequests(name, data.subarray(0, 4 * MiB), { finish: false }))).toBe(4 * MiB);
    return { data, name, bazel7: withToolDetails(bearer(), 'bazel', '7.4.1'), bazel21: withToolDetails(bearer(), 'bazel', '2.1.0') };
  }

  it('always: every client is told 0 until the blob is complete, and re-sends from 0', async () => {
    const h = await startIngest({ FERRY_REAPI_ZERO_RESUME: 'always' });
    try {
      const { data, name, bazel7, bazel21 } = await unfinished(h, 'u-always');
      for (const metadata of [bearer(), bazel7, bazel21]) {
        expect(await queryWriteStatus(h.client, name, metadata)).toEqual({ committed_size: 0, complete: false });
      }
      expect(await writeRequests(h.client, chunkedRequests(name, data), bazel7)).toBe(data.length);
      expect(await queryWriteStatus(h.client, name, bazel7)).toEqual({ committed_size: data.length, complete: true });
    } finally {
      await h.close();
    }
  });

  it('never: every client, Bazel 2.1 too, is told the committed size; a re-send from 0 is still accepted', async () => {
    const h = await startIngest({ FERRY_REAPI_ZERO_RESUME: 'never' });
    try {
      const { data, name, bazel7, bazel21 } = await unfinished(h, 'u-never');
      for (const metadata of [bearer(), bazel7, bazel21]) {
        expect(await queryWriteStatus(h.client, name, metadata)).toEqual({ committed_size: 4 * MiB, complete: false });
      }
      expect(await writeRequests(h.client, chunkedRequests(name, data), bazel21)).toBe(data.length);
      expect(await queryWriteStatus(h.client, name, bazel21)).toEqual({ committed_size: data.length, complete: true });
      expect(sha((await readBytes(h.client, `blobs/${sha(data)}/${data.length}`)).data)).toBe(sha(data));
    } finally {
      await h.close();
    }
  });
});
