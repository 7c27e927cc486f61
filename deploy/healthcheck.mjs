// Container health check: `node healthcheck.mjs http <port> [path]` (GET, 2xx = healthy) or
// `node healthcheck.mjs grpc <port>` (grpc.health.v1 Check of the whole server = SERVING).
import { createRequire } from 'node:module';

const [kind, port, path = '/readyz'] = process.argv.slice(2);
const fail = (why) => {
  console.error(`unhealthy: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('no answer within 4 s'), 4000).unref();

if (kind === 'http') {
  fetch(`http://127.0.0.1:${port}${path}`).then(
    (res) => (res.ok ? process.exit(0) : fail(`HTTP ${res.status}`)),
    (err) => fail(err.message),
  );
} else if (kind === 'grpc') {
  const require = createRequire(import.meta.url);
  const grpc = require('@grpc/grpc-js');
  const { service } = require('grpc-health-check');
  const Health = grpc.makeGenericClientConstructor(service, 'Health');
  const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  client.Check({ service: '' }, (err, res) => (err ? fail(err.message) : res.status === 'SERVING' ? process.exit(0) : fail(res.status)));
} else {
  fail('usage: healthcheck.mjs http <port> [path] | grpc <port>');
}
