#!/usr/bin/env node
// A TCP balancer in front of an app's replicas, as a Kubernetes Service (kube-proxy) or a cloud L4
// load balancer puts one: each new connection goes to the next backend in turn; a backend that
// refuses the connection (a killed replica, one still starting) is skipped for the next one. A
// connection lives and dies with its backend: when a replica is killed, its clients see their
// connection close and reconnect, through here, to a replica that lives. Nothing is inspected:
// HTTP/1.1 keep-alive connections and gRPC's HTTP/2 connections pass as bytes.
//
//   node tools/load/balancer.mjs <listen-port> <backend-port> [<backend-port>...]
//
// Prints `listening <port>` once it accepts connections (port 0: a free one). Used by
// libs/testing's startFerryStack({ replicas }) for the load run (apps/load-e2e).
import net from 'node:net';

const [listen, ...backends] = process.argv.slice(2).map(Number);
if (!Number.isInteger(listen) || backends.length === 0 || backends.some((p) => !Number.isInteger(p) || p <= 0)) {
  console.error('usage: node tools/load/balancer.mjs <listen-port> <backend-port> [<backend-port>...]');
  process.exit(2);
}

let next = 0;

/** Joins `client` to the next backend that accepts a connection; closes it when none does. */
function attach(client, tried = 0) {
  if (tried === backends.length) return client.destroy();
  const port = backends[next++ % backends.length];
  const upstream = net.connect({ host: '127.0.0.1', port });
  let joined = false;
  upstream.once('connect', () => {
    joined = true;
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  upstream.on('error', () => {
    if (joined) client.destroy();
    else attach(client, tried + 1);
  });
  upstream.on('close', () => joined && client.destroy());
  client.on('close', () => upstream.destroy());
}

const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (client) => {
  client.on('error', () => client.destroy());
  attach(client);
});
server.listen(listen, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
