#!/usr/bin/env node
// An s3rver (npm) on 127.0.0.1:<port> keeping its data in <dir>, with one bucket: the S3-compatible
// store of the S3 benchmarks, in a process of its own so that its CPU and memory can be sampled.
// With a <statsPort>, it also counts the requests it serves and the body bytes they carry, by
// method and kind of key (a staging part, a tail piece, a blob, the bucket), and answers the
// counts as JSON on http://127.0.0.1:<statsPort>/.
// Usage: node tools/bench/s3rver-server.mjs <port> <dir> <bucket> [statsPort]
import { createServer } from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const S3rver = require('s3rver');
const [port, directory, bucket, statsPort] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), silent: true, directory, configureBuckets: [{ name: bucket }] });
await server.run();
if (statsPort) {
  const counts = {};
  const kindOf = (url) => {
    const [path, query = ''] = url.split('?');
    const key = decodeURIComponent(path).split('/').slice(2).join('/');
    const kind = !key
      ? 'bucket'
      : /^staging\/[^/]+\/tail-\d+-\d+(\.f\d+)?$/.test(key)
        ? 'tail piece'
        : /^staging\/[^/]+\/\d+(\.f\d+)?$/.test(key)
          ? 'part'
          : key.startsWith('blobs/')
            ? 'blob'
            : 'other';
    const sub = ['delete', 'uploads', 'uploadId', 'list-type'].filter((q) => new RegExp(`(^|&)${q}(=|&|$)`).test(query));
    return sub.length ? `${kind} (${sub.join(',')})` : kind;
  };
  server.httpServer.on('request', (req) => {
    const label = `${req.method} ${kindOf(req.url)}`;
    const c = (counts[label] ??= { requests: 0, bytes: 0 });
    c.requests++;
    c.bytes += Number(req.headers['content-length'] ?? 0);
  });
  createServer((_, res) => res.end(JSON.stringify(counts))).listen(Number(statsPort), '127.0.0.1');
}
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
