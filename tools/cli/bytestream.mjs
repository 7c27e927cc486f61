#!/usr/bin/env node
// A small ByteStream client for Ferry: resumable upload, download, status.
//
//   node tools/cli/bytestream.mjs upload <file> <resource-name>   (resumes from QueryWriteStatus)
//   node tools/cli/bytestream.mjs read <resource-name> <file>
//   node tools/cli/bytestream.mjs status <resource-name>
//
// Environment: FERRY_GRPC_ADDRESS (default 127.0.0.1:50051), FERRY_TOKEN (default dev-secret).
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { bearer, grpc, loadByteStream } from '../lib/bytestream.mjs';

const address = process.env.FERRY_GRPC_ADDRESS ?? '127.0.0.1:50051';
const token = process.env.FERRY_TOKEN ?? 'dev-secret';
const CHUNK = 2 * 1024 * 1024;

const { ByteStream } = loadByteStream();
const client = new ByteStream(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
const metadata = () => bearer(token);

function status(name) {
  return new Promise((resolve, reject) =>
    client.QueryWriteStatus({ resource_name: name }, metadata(), (err, res) => {
      if (err?.code === grpc.status.NOT_FOUND) resolve({ committed_size: 0, complete: false });
      else if (err) reject(err);
      else resolve(res);
    }),
  );
}

async function uploadOnce(file, name, size) {
  const { committed_size: from, complete } = await status(name);
  if (complete) return from;
  if (from > 0) console.error(`resuming ${name} at byte ${from} of ${size}`);
  return new Promise((resolve, reject) => {
    const call = client.Write(metadata(), (err, res) => (err ? reject(err) : resolve(res.committed_size)));
    (async () => {
      let offset = from;
      let first = true;
      if (from === size) {
        call.write({ resource_name: name, write_offset: from, finish_write: true });
      } else {
        for await (const data of createReadStream(file, { start: from, highWaterMark: CHUNK })) {
          const finish = offset + data.length === size;
          if (!call.write({ resource_name: first ? name : '', write_offset: offset, finish_write: finish, data })) {
            await new Promise((r) => call.once('drain', r));
          }
          first = false;
          offset += data.length;
        }
      }
      call.end();
    })().catch((err) => {
      call.cancel();
      reject(err);
    });
  });
}

async function upload(file, name) {
  const size = statSync(file).size;
  for (let attempt = 1; ; attempt++) {
    try {
      const committed = await uploadOnce(file, name, size);
      console.log(`uploaded ${name}: ${committed} bytes`);
      return;
    } catch (err) {
      const retryable = [grpc.status.UNAVAILABLE, grpc.status.ABORTED, grpc.status.DEADLINE_EXCEEDED, grpc.status.INTERNAL].includes(
        err.code,
      );
      if (!retryable || attempt >= 20) throw err;
      console.error(`${err.details ?? err.message}; retrying (${attempt})`);
      await new Promise((r) => setTimeout(r, Math.min(500 * attempt, 5000)));
    }
  }
}

async function read(name, file) {
  const call = client.Read({ resource_name: name, read_offset: 0, read_limit: 0 }, metadata());
  await pipeline(
    (async function* () {
      for await (const msg of call) yield msg.data;
    })(),
    createWriteStream(file),
  );
  console.log(`read ${name} into ${file}`);
}

const [cmd, a, b] = process.argv.slice(2);
const commands = {
  upload: () => upload(a, b),
  read: () => read(a, b),
  status: async () => console.log(JSON.stringify(await status(a))),
};
if (!commands[cmd] || !a || (cmd !== 'status' && !b)) {
  console.error('usage: bytestream.mjs upload <file> <name> | read <name> <file> | status <name>');
  process.exit(2);
}
commands[cmd]()
  .then(() => client.close())
  .catch((err) => {
    console.error(`error: ${err.details ?? err.message} (code ${err.code ?? '-'})`);
    process.exit(1);
  });
