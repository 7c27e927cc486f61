// Baseline: the least a gRPC server can do to accept a ByteStream Write into a file. Plain grpc-js,
// same proto and message limit as Ferry, one file per call, written in order, fsynced at the end.
// Usage: node tools/bench/bare-sink.mjs <port> <dir>
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { grpc, loadByteStream } from './lib.mjs';

const [port, dir] = process.argv.slice(2);
const { ByteStream } = loadByteStream();
let n = 0;
const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
server.addService(ByteStream.service, {
  async Write(call, callback) {
    const fh = await open(join(dir, `sink-${process.pid}-${n++}`), 'w');
    let size = 0;
    try {
      for await (const req of call) {
        if (req.data.length) await fh.write(req.data, 0, req.data.length, size);
        size += req.data.length;
      }
      await fh.sync();
      callback(null, { committed_size: size });
    } catch (err) {
      callback({ code: grpc.status.INTERNAL, details: String(err) });
    } finally {
      await fh.close();
    }
  },
  Read(call) {
    call.end();
  },
  QueryWriteStatus(call, callback) {
    callback(null, { committed_size: 0, complete: false });
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
