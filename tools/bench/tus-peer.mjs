#!/usr/bin/env node
// The peer of `bench:peer`: the reference tus server (@tus/server with @tus/file-store) as its README
// sets it up, on 127.0.0.1:<port>, uploads under <dir>. Usage: node tools/bench/tus-peer.mjs <port> <dir>
//
// BENCH_PEER_FSYNC=1 makes it durable as Ferry is: each PATCH's bytes are fdatasync'ed before the
// answer (the stock FileStore never syncs, so on a quick benchmark its bytes need never reach the
// disk: the file is deleted while still in the page cache). Off by default: the peer as shipped.
import { open } from 'node:fs/promises';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

class DurableFileStore extends FileStore {
  async write(readable, id, offset) {
    const end = await super.write(readable, id, offset);
    const file = await open(this.resolve(id), 'r+');
    try {
      await file.datasync();
    } finally {
      await file.close();
    }
    return end;
  }
}

const [port, directory] = process.argv.slice(2);
const Store = process.env.BENCH_PEER_FSYNC === '1' ? DurableFileStore : FileStore;
const server = new Server({ path: '/files', datastore: new Store({ directory }) });
server.listen({ host: '127.0.0.1', port: Number(port) });
process.on('SIGTERM', () => process.exit(0));
