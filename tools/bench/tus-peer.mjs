#!/usr/bin/env node
// The peer of `bench:peer`: the reference tus server (@tus/server with @tus/file-store) as its README
// sets it up, on 127.0.0.1:<port>, uploads under <dir>. Usage: node tools/bench/tus-peer.mjs <port> <dir>
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) });
server.listen({ host: '127.0.0.1', port: Number(port) });
process.on('SIGTERM', () => process.exit(0));
