// A minimal tus 1.0.0 client over node:http for the benchmarks: creation (POST), then the bytes in
// PATCHes of `chunkSize` (one PATCH of everything when it is Infinity), one after the other, each
// checked against the Upload-Offset the server answers. The same code drives Ferry and @tus/server,
// and costs the client next to nothing: each PATCH body is a view of the caller's buffer handed to
// the socket whole (no copy, no per-chunk JavaScript), so the shared cores go to the servers.
import { Agent } from 'node:http';
import { request } from './lib.mjs';

const TUS = '1.0.0';

/** One tus request on `agent` (lib.mjs's request, with Tus-Resumable). */
const call = (url, { headers, ...rest }) => request(url, { ...rest, headers: { 'tus-resumable': TUS, ...headers } });

/** A keep-alive agent with one socket: a tus client's requests follow one another on one connection. */
export const tusAgent = () => new Agent({ keepAlive: true, maxSockets: 1 });

/**
 * Uploads `data` to the tus `endpoint` (e.g. http://127.0.0.1:1080/files): POST with Upload-Length
 * and Upload-Metadata (filename), then PATCHes of `chunkSize` bytes in order. `headers` go on every
 * request (e.g. Authorization). `origins` (e.g. two replicas' `http://127.0.0.1:port`): PATCH n goes
 * to origins[n % length], as a load balancer may spread them. Resolves with the upload URL; throws
 * on any unexpected answer.
 */
export async function tusUpload({ endpoint, data, chunkSize = Infinity, headers = {}, agent, filename = 'bench.bin', origins }) {
  const created = await call(endpoint, {
    method: 'POST',
    agent,
    headers: {
      ...headers,
      'upload-length': String(data.length),
      'upload-metadata': `filename ${Buffer.from(filename).toString('base64')}`,
    },
  });
  if (created.status !== 201 || !created.headers.location) {
    throw new Error(`tus POST ${endpoint}: ${created.status} ${created.text}`);
  }
  const url = new URL(created.headers.location, endpoint).href;
  let offset = 0;
  for (let n = 0; offset < data.length; n++) {
    const end = Math.min(data.length, offset + chunkSize);
    const target = origins ? new URL(new URL(url).pathname, origins[n % origins.length]).href : url;
    const res = await call(target, {
      method: 'PATCH',
      agent,
      headers: { ...headers, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(offset) },
      body: data.subarray(offset, end),
    });
    if (res.status !== 204 || Number(res.headers['upload-offset']) !== end) {
      throw new Error(
        `tus PATCH ${url} at ${offset}: ${res.status}, Upload-Offset ${res.headers['upload-offset']} (expected ${end}) ${res.text}`,
      );
    }
    offset = end;
  }
  return url;
}
