#!/usr/bin/env node
// An s3rver (npm) on 127.0.0.1:<port> keeping its data in <dir>, with one bucket: the S3-compatible
// store of the S3 benchmark, in a process of its own so that its CPU and memory can be sampled.
// Usage: node tools/bench/s3rver-server.mjs <port> <dir> <bucket>
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const S3rver = require('s3rver');
const [port, directory, bucket] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), silent: true, directory, configureBuckets: [{ name: bucket }] });
await server.run();
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
