/**
 * zstd over REAPI (compressed-blobs ByteStream names, batch compressors), with frames made by the
 * zstd command line (the reference encoder) and read back through it.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { BatchReadBlobsResponse__Output, BatchUpdateBlobsResponse__Output, ServerCapabilities__Output } from '@ferry/protocol';
import type { WriteRequest } from '@ferry/protocol';
import {
  ReapiClients,
  bearer,
  chunkedRequests,
  expectGrpcCode,
  queryWriteStatus,
  readBytes,
  reapiClients,
  unaryCall,
  writeRequests,
} from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const digestOf = (b: Buffer) => ({ hash: sha(b), size_bytes: b.length });
const zstd = (data: Buffer, ...args: string[]) => execFileSync('zstd', ['-q', '-c', ...args], { input: data, maxBuffer: 1 << 30 });
const unzstd = (data: Buffer) => execFileSync('zstd', ['-q', '-d', '-c'], { input: data, maxBuffer: 1 << 30 });
const MiB = 1024 * 1024;
/** Compressible content: random blocks repeated. */
const content = (size: number) => {
  const block = randomBytes(64 * 1024);
  return Buffer.concat(Array.from({ length: Math.ceil(size / block.length) }, () => block)).subarray(0, size);
};

/**
 * A compressed Write as REAPI says (and Bazel sends it): the first message at `start`, an offset in
 * the uncompressed blob; each next one at `start` plus the compressed bytes sent before it.
 */
function* compressedRequests(
  name: string,
  compressed: Buffer,
  { start = 0, chunk = 64 * 1024, finish = true } = {},
): Generator<WriteRequest> {
  for (let pos = 0; pos < compressed.length; pos += chunk) {
    const end = Math.min(pos + chunk, compressed.length);
    yield {
      resource_name: pos === 0 ? name : '',
      write_offset: start + pos,
      finish_write: finish && end === compressed.length,
      data: compressed.subarray(pos, end),
    };
  }
}

describe('zstd over REAPI (compressed-blobs, batch compressors)', () => {
  let h: IngestHarness;
  let r: ReapiClients;
  const uploadName = (data: Buffer, uuid: string) => `ci/uploads/${uuid}/compressed-blobs/zstd/${sha(data)}/${data.length}`;
  const readName = (data: Buffer, compressed = true) => `ci/${compressed ? 'compressed-blobs/zstd' : 'blobs'}/${sha(data)}/${data.length}`;
  const stored = async (data: Buffer) => {
    const res = await unaryCall<{ missing_blob_digests: object[] }>(
      r.cas,
      'FindMissingBlobs',
      { instance_name: 'ci', blob_digests: [digestOf(data)] },
      bearer(),
    );
    return res.missing_blob_digests.length === 0;
  };

  beforeAll(async () => {
    h = await startIngest({ FERRY_REAPI_INSTANCES: ',ci', FERRY_REAPI_MAX_BATCH_BYTES: String(4 * MiB) });
    r = reapiClients(h.address);
  });

  afterAll(async () => {
    r.close();
    await h.close();
  });

  it('advertises zstd for ByteStream and both batch calls', async () => {
    const caps = await unaryCall<ServerCapabilities__Output>(r.capabilities, 'GetCapabilities', { instance_name: 'ci' }, bearer());
    expect(caps.cache_capabilities?.supported_compressors).toEqual(['ZSTD']);
    expect(caps.cache_capabilities?.supported_batch_update_compressors).toEqual(['ZSTD']);
  });

  it('takes a compressed Write, stores the blob uncompressed, and reads it back plain and compressed', async () => {
    const data = content(5 * MiB + 123);
    const compressed = zstd(data, '-3');
    expect(compressed.length).toBeLessThan(data.length / 4);
    // answered with the first offset plus the compressed bytes: what Bazel checks
    expect(await writeRequests(h.client, compressedRequests(uploadName(data, 'w1'), compressed))).toBe(compressed.length);
    expect((await readBytes(h.client, readName(data, false))).data.equals(data)).toBe(true);
    const read = await readBytes(h.client, readName(data));
    expect(read.data.length).toBeLessThan(data.length);
    expect(unzstd(read.data).equals(data)).toBe(true);
    // from an offset in the uncompressed blob: a zstd stream of the rest
    expect(unzstd((await readBytes(h.client, readName(data), { offset: 3 * MiB })).data).equals(data.subarray(3 * MiB))).toBe(true);
    // already there: -1 for a compressed upload, its size for a plain one
    expect(await writeRequests(h.client, compressedRequests(uploadName(data, 'w2'), compressed))).toBe(-1);
    expect(await writeRequests(h.client, chunkedRequests(`ci/uploads/w3/blobs/${sha(data)}/${data.length}`, data))).toBe(data.length);
    // and the empty blob, compressed, is an empty zstd frame
    expect(unzstd((await readBytes(h.client, `compressed-blobs/zstd/${sha(Buffer.alloc(0))}/0`)).data).length).toBe(0);
  });

  it('resumes a compressed Write at the uncompressed committed size, with a new zstd stream from there', async () => {
    const data = randomBytes(6 * MiB);
    const name = uploadName(data, 'resume');
    // the first attempt sends the first 4 MiB, compressed, and stops without finishing
    const head = zstd(data.subarray(0, 4 * MiB));
    expect(await writeRequests(h.client, compressedRequests(name, head, { finish: false }))).toBe(4 * MiB);
    expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: 4 * MiB, complete: false });
    // the client compresses from the committed offset on, and starts its offsets there
    const tail = zstd(data.subarray(4 * MiB));
    expect(await writeRequests(h.client, compressedRequests(name, tail, { start: 4 * MiB }))).toBe(4 * MiB + tail.length);
    expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: data.length, complete: true });
    expect(sha((await readBytes(h.client, readName(data, false))).data)).toBe(sha(data));
    // a re-send from before the committed size: the bytes held are skipped
    const again = randomBytes(3 * MiB);
    const againName = uploadName(again, 'resend');
    expect(await writeRequests(h.client, compressedRequests(againName, zstd(again.subarray(0, 2 * MiB)), { finish: false }))).toBe(2 * MiB);
    const fromOne = zstd(again.subarray(MiB));
    expect(await writeRequests(h.client, compressedRequests(againName, fromOne, { start: MiB }))).toBe(MiB + fromOne.length);
    expect(sha((await readBytes(h.client, readName(again, false))).data)).toBe(sha(again));
  });

  it('refuses a bad, truncated, oversized or mismatched stream with INVALID_ARGUMENT, and keeps nothing', async () => {
    const data = content(2 * MiB);
    const good = zstd(data);
    const corrupt = Buffer.from(good);
    for (let i = 100; i < 200; i++) corrupt[i] ^= 0x5a;
    const cases: [string, Buffer, RegExp][] = [
      ['garbage', randomBytes(4096), /not a valid zstd stream/],
      ['corrupt', corrupt, /zstd|digest mismatch/],
      ['truncated', good.subarray(0, good.length - 20), /middle of a frame/],
      ['bomb', zstd(Buffer.alloc(64 * MiB)), /decompresses to more than the 2097152 bytes/],
      ['other-content', zstd(content(2 * MiB)), /digest mismatch/],
    ];
    for (const [uuid, compressed, message] of cases) {
      const name = uploadName(data, uuid);
      await expectGrpcCode(writeRequests(h.client, compressedRequests(name, compressed)), grpc.status.INVALID_ARGUMENT, message);
      // nothing kept: no blob, no upload to resume
      expect(await stored(data)).toBe(false);
      expect(await queryWriteStatus(h.client, name)).toEqual({ committed_size: 0, complete: false });
    }
    // a whole compressed upload in one message too
    const single = uploadName(data, 'single');
    await expectGrpcCode(
      writeRequests(h.client, [{ resource_name: single, write_offset: 0, finish_write: true, data: randomBytes(100) }]),
      grpc.status.INVALID_ARGUMENT,
      /not a valid zstd stream/,
    );
    expect(await stored(data)).toBe(false);
    // read_limit is refused for compressed reads (REAPI: they are not ranges), other compressors too
    await expectGrpcCode(readBytes(h.client, readName(data), { limit: 10 }), grpc.status.INVALID_ARGUMENT, /read_limit must be 0/);
    await expectGrpcCode(
      readBytes(h.client, `compressed-blobs/deflate/${sha(data)}/${data.length}`),
      grpc.status.INVALID_ARGUMENT,
      /compressor "deflate"/,
    );
  });

  it('never holds a large blob whole: one small compressed message of 64 MiB streams to staging; a batch counts blob sizes', async () => {
    const zeros = Buffer.alloc(64 * MiB);
    const name = uploadName(zeros, 'one-message');
    const compressed = zstd(zeros);
    expect(compressed.length).toBeLessThan(MiB);
    expect(await writeRequests(h.client, [{ resource_name: name, write_offset: 0, finish_write: true, data: compressed }])).toBe(
      compressed.length,
    );
    expect(sha((await readBytes(h.client, readName(zeros, false))).data)).toBe(sha(zeros));
    // a batch of one tiny zstd message standing for 64 MiB is over the 4 MiB batch limit
    const big = Buffer.alloc(64 * MiB, 1);
    await expectGrpcCode(
      unaryCall(
        r.cas,
        'BatchUpdateBlobs',
        { instance_name: 'ci', requests: [{ digest: digestOf(big), data: zstd(big), compressor: 'ZSTD' }] },
        bearer(),
      ),
      grpc.status.INVALID_ARGUMENT,
      /exceeds max_batch_total_size_bytes/,
    );
  });

  it('batch: stores ZSTD blobs verified, and answers reads compressed when the client accepts it', async () => {
    const a = content(300 * 1024);
    const b = randomBytes(1000);
    const update = await unaryCall<BatchUpdateBlobsResponse__Output>(
      r.cas,
      'BatchUpdateBlobs',
      {
        instance_name: 'ci',
        requests: [
          { digest: digestOf(a), data: zstd(a), compressor: 'ZSTD' },
          { digest: digestOf(b), data: zstd(b), compressor: 'ZSTD' },
          { digest: digestOf(randomBytes(10)), data: zstd(randomBytes(10)), compressor: 'ZSTD' }, // another blob's bytes
          { digest: { hash: sha(b), size_bytes: 10 }, data: zstd(b), compressor: 'ZSTD' }, // more than the digest says
          { digest: digestOf(a), data: randomBytes(50), compressor: 'ZSTD' }, // not zstd
        ],
      },
      bearer(),
    );
    expect(update.responses.map((x) => x.status?.code)).toEqual([0, 0, 3, 3, 3]);
    expect(update.responses[2].status?.message).toMatch(/digest mismatch/);
    expect(update.responses[3].status?.message).toMatch(/more than the 10 bytes/);
    expect(update.responses[4].status?.message).toMatch(/not a valid zstd stream/);
    const read = await unaryCall<BatchReadBlobsResponse__Output>(
      r.cas,
      'BatchReadBlobs',
      { instance_name: 'ci', digests: [digestOf(a), digestOf(b)], acceptable_compressors: ['ZSTD'] },
      bearer(),
    );
    // compressible: zstd; random bytes gain nothing from it: sent as they are
    expect(read.responses.map((x) => x.compressor)).toEqual(['ZSTD', 'IDENTITY']);
    expect(unzstd(read.responses[0].data).equals(a)).toBe(true);
    expect(read.responses[1].data.equals(b)).toBe(true);
    const plain = await unaryCall<BatchReadBlobsResponse__Output>(
      r.cas,
      'BatchReadBlobs',
      { instance_name: 'ci', digests: [digestOf(a)] },
      bearer(),
    );
    expect(plain.responses[0].compressor).toBe('IDENTITY');
    expect(plain.responses[0].data.equals(a)).toBe(true);
  });
});
