// Baseline: the least a node:http server can do to accept a part durably. Plain node:http, every
// `PUT /<anything>` body piped in order into its own file in <dir>, fsynced before the file is
// closed (write stream `flush: true`), then 200. Any other request gets 404.
// Usage: node tools/bench/bare-http.mjs <port> <dir>     (SIGTERM closes it)
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const [port, dir] = process.argv.slice(2);
let n = 0;
const server = createServer(async (req, res) => {
  if (req.method !== 'PUT') {
    res.writeHead(404).end();
    return;
  }
  try {
    // flush: fsync(2) after the last write, before close; pipeline settles after close.
    await pipeline(req, createWriteStream(join(dir, `put-${process.pid}-${n++}`), { flush: true }));
    res.writeHead(200).end();
  } catch (err) {
    if (!res.headersSent && !res.destroyed) res.writeHead(500).end(String(err));
  }
});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
