// Baseline: the least a grpc-js server can do to accept google.storage.v2 writes into a file and
// serve them back. Same proto, message limit and per-message crc32c checks as Ferry; one file per
// upload id, written in order; fsync on flush and at finish; ReadObject streams the file in 2 MiB
// chunks, each with its crc32c. No Redis, no digests, no catalog; HTTP/2 windows tuned as Ferry's.
// Usage: node tools/bench/bare-gcs-sink.mjs <port> <dir>
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { grpc } from '../lib/bytestream.mjs';
import { crc32c, loadStorage } from '../lib/storage.mjs';

const [port, dir] = process.argv.slice(2);
const { Storage } = loadStorage();
const CHUNK = 2 * 1024 * 1024;

/** Consumes a write stream into its file; `reply(size)` answers a state_lookup. */
async function receive(call, reply) {
  let fh;
  let size = 0;
  let finished = false;
  try {
    for await (const req of call.iterator({ destroyOnReturn: false })) {
      if (!fh) fh = await open(join(dir, req.upload_id || `single-${randomBytes(8).toString('hex')}`), 'a');
      const data = req.checksummed_data;
      if (data?.content.length) {
        if (data.crc32c !== undefined && crc32c(data.content) !== data.crc32c) throw new Error('crc32c mismatch');
        await fh.write(data.content, 0, data.content.length, req.write_offset);
        size = req.write_offset + data.content.length;
      }
      if (req.finish_write) finished = true;
      else if (req.flush) await fh.sync();
      if (req.state_lookup && !req.finish_write) await reply(size);
    }
    await fh?.sync();
    return finished ? { resource: { size } } : { persisted_size: size };
  } finally {
    await fh?.close();
  }
}

const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
server.addService(Storage.service, {
  StartResumableWrite(call, callback) {
    callback(null, { upload_id: randomBytes(12).toString('hex') });
  },
  QueryWriteStatus(call, callback) {
    callback(null, { persisted_size: 0 });
  },
  WriteObject(call, callback) {
    receive(call, async () => undefined).then(
      (res) => callback(null, res),
      (err) => callback({ code: grpc.status.INTERNAL, details: String(err) }),
    );
  },
  BidiWriteObject(call) {
    receive(call, async (size) => {
      if (!call.write({ persisted_size: size })) await once(call, 'drain');
    }).then(
      (res) => {
        if ('resource' in res) call.write(res);
        call.end();
      },
      (err) => call.emit('error', { code: grpc.status.INTERNAL, details: String(err) }),
    );
  },
  async ReadObject(call) {
    let fh;
    try {
      fh = await open(join(dir, call.request.object), 'r');
      for (let pos = 0; ;) {
        const buf = Buffer.allocUnsafe(CHUNK);
        const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        const content = buf.subarray(0, bytesRead);
        if (!call.write({ checksummed_data: { content, crc32c: crc32c(content) } })) await once(call, 'drain');
      }
      call.end();
    } catch (err) {
      call.emit('error', { code: grpc.status.INTERNAL, details: String(err) });
    } finally {
      await fh?.close();
    }
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  // The same HTTP/2 tuning as Ferry (8 MiB windows, 1 MiB frames), so the baseline is not held
  // back by grpc-js's 64 KiB default window.
  const window = 8 * 1024 * 1024;
  for (const http2Server of server.http2Servers?.keys() ?? []) {
    http2Server.updateSettings({ initialWindowSize: window, maxFrameSize: 1024 * 1024 });
    http2Server.on('session', (session) => session.once('localSettings', () => session.setLocalWindowSize(window)));
  }
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
