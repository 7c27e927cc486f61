// The client side of Ferry's benchmarks: each protocol's upload as its clients do it, over plain
// node:http and grpc-js, with data from memory. Development mode (token dev-secret).
import { randomUUID } from 'node:crypto';
import { Agent } from 'node:http';
import { bearer, grpc, inParallel, loadByteStream, request } from './lib.mjs';

export const TOKEN = 'dev-secret';

/** A bearer-authenticated JSON call; throws unless the status is `expect`. */
export async function api(base, agent, method, path, json, expect) {
  const body = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
  const headers = { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) };
  const res = await request(`${base}${path}`, { method, headers, body, agent });
  if (res.status !== expect) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
  return JSON.parse(res.text);
}

export const keepAlive = (sockets) => new Agent({ keepAlive: true, maxSockets: sockets });

/**
 * Synapse's cycle, in phases the caller can time apart: `start()` (forceRestart, so no dedup, and
 * every presigned URL), `upload()` (every part PUT to its URL and added with its md5, `parallel` at
 * a time), `complete()` (until 200 COMPLETED).
 */
export function multipartUpload({ base, agent, data, partSize, parallel, contentMD5Hex, partMd5s, fileName }) {
  const count = Math.ceil(data.length / partSize);
  const part = (n) => data.subarray((n - 1) * partSize, Math.min(data.length, n * partSize));
  let id;
  const urls = new Map();
  return {
    async start() {
      const started = await api(
        base,
        agent,
        'POST',
        '/file/multipart?forceRestart=true',
        {
          fileName,
          contentType: 'application/octet-stream',
          contentMD5Hex,
          fileSizeBytes: data.length,
          partSizeBytes: partSize,
        },
        201,
      );
      if (started.state !== 'UPLOADING')
        throw new Error(`start answered ${started.state}, not UPLOADING (deduplicated?): ${JSON.stringify(started)}`);
      id = started.uploadId;
      for (let first = 1; first <= count; first += 1000) {
        const partNumbers = Array.from({ length: Math.min(1000, count - first + 1) }, (_, i) => first + i);
        const batch = await api(base, agent, 'POST', `/file/multipart/${id}/presigned/url/batch`, { uploadId: id, partNumbers }, 201);
        for (const u of batch.partPresignedUrls) urls.set(u.partNumber, u);
      }
      if (urls.size !== count) throw new Error(`got ${urls.size} presigned URLs for ${count} parts`);
    },
    upload: () =>
      inParallel(count, parallel, async (i) => {
        const n = i + 1;
        const { uploadPresignedUrl, signedHeaders } = urls.get(n);
        const res = await request(uploadPresignedUrl, { method: 'PUT', headers: signedHeaders, body: part(n), agent });
        if (res.status !== 200) throw new Error(`PUT part ${n}: ${res.status} ${res.text}`);
        const add = await api(base, agent, 'PUT', `/file/multipart/${id}/add/${n}?partMD5Hex=${partMd5s[n - 1]}`, undefined, 200);
        if (add.addPartState !== 'ADD_SUCCESS') throw new Error(`add part ${n}: ${JSON.stringify(add)}`);
      }),
    async complete() {
      const done = await api(base, agent, 'PUT', `/file/multipart/${id}/complete`, undefined, 200);
      if (done.state !== 'COMPLETED') throw new Error(`complete answered ${done.state}: ${JSON.stringify(done)}`);
      return done;
    },
  };
}

/**
 * The Taskcluster object API's putUrl method with a plain client: createUpload, one PUT of `data`
 * to the putUrl in 1 MiB writes, finishUpload declaring its sha256.
 */
export async function objectPut({ base, name, data, sha256, slugid }) {
  const uploadId = slugid();
  const expires = new Date(Date.now() + 86_400_000).toISOString();
  const path = `/api/object/v1/upload/${encodeURIComponent(name)}`;
  const created = await api(
    base,
    false,
    'PUT',
    path,
    {
      projectId: 'bench',
      uploadId,
      expires,
      proposedUploadMethods: { putUrl: { contentType: 'application/octet-stream', contentLength: data.length } },
    },
    200,
  );
  const { url, headers } = created.uploadMethod.putUrl ?? {};
  if (!url) throw new Error(`createUpload offered no putUrl: ${JSON.stringify(created)}`);
  const res = await request(url, { method: 'PUT', headers, body: data });
  if (res.status !== 200) throw new Error(`PUT: ${res.status} ${res.text}`);
  await api(
    base,
    false,
    'POST',
    `/api/object/v1/finish-upload/${encodeURIComponent(name)}`,
    { projectId: 'bench', uploadId, hashes: { sha256 } },
    200,
  );
}

/** One ByteStream Write of `data` in `chunk`-byte messages under a generic name; resolves with committed_size. */
export function byteStreamWrite({ port, data, chunk, name = `bench/${randomUUID()}` }) {
  const { ByteStream } = loadByteStream();
  const client = new ByteStream(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  return new Promise((resolve, reject) => {
    const call = client.Write(bearer(TOKEN), (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(Number(res.committed_size));
    });
    (async () => {
      for (let off = 0; off < data.length; off += chunk) {
        const len = Math.min(chunk, data.length - off);
        const ok = call.write({
          resource_name: off === 0 ? name : '',
          write_offset: off,
          finish_write: off + len === data.length,
          data: data.subarray(off, off + len),
        });
        if (!ok) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    })().catch(reject);
  });
}
