// Baseline: the least a node:http server can do to accept a part durably. Plain node:http, every
// `PUT /<anything>` body piped in order into its own file in <dir>, fsynced before the file is
// closed (write stream `flush: true`), then 200. `GET /<anything>` streams the file the last
// successful PUT of that path stored (fs.createReadStream, Content-Length set), 404 if there is
// none (or it was deleted since). Any other request gets 404. With `md5`, each PUT body is also
// hashed on the way (as a multipart API must: a part is checked against its partMD5Hex) and the
// 200 carries it as ETag, as S3's UploadPart does.
// Usage: node tools/bench/bare-http.mjs <port> <dir> [md5]     (SIGTERM closes it)
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const [port, dir, mode] = process.argv.slice(2);
const withMd5 = mode === 'md5';
let n = 0;
const stored = new Map(); // request path -> the file its last successful PUT wrote

async function get(req, res) {
  const file = stored.get(req.url);
  const size =
    file === undefined
      ? undefined
      : await stat(file).then(
          (s) => s.size,
          () => undefined,
        );
  if (size === undefined) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  // a client that goes away mid-download is not an error of ours
  await pipeline(createReadStream(file), res).catch(() => res.destroy());
}

const server = createServer(async (req, res) => {
  if (req.method === 'GET') {
    await get(req, res);
    return;
  }
  if (req.method !== 'PUT') {
    res.writeHead(404).end();
    return;
  }
  try {
    const file = join(dir, `put-${process.pid}-${n++}`);
    // flush: fsync(2) after the last write, before close; pipeline settles after close.
    const md5 = withMd5 ? createHash('md5') : undefined;
    if (md5) req.on('data', (chunk) => md5.update(chunk));
    await pipeline(req, createWriteStream(file, { flush: true }));
    stored.set(req.url, file);
    res.writeHead(200, md5 ? { etag: `"${md5.digest('hex')}"` } : {}).end();
  } catch (err) {
    if (!res.headersSent && !res.destroyed) res.writeHead(500).end(String(err));
  }
});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
