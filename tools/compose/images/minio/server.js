// The MinIO stand-in's server (Dockerfile beside this): s3rver on :9000, as
// `minio server <dir> [--console-address <addr>]` is called, with the root credentials of the
// MinIO image's environment as its only key pair.
'use strict';
const { createHash, randomBytes } = require('node:crypto');
const { createWriteStream } = require('node:fs');
const { mkdir, rename, rm } = require('node:fs/promises');
const { IncomingMessage } = require('node:http');
const { dirname } = require('node:path');
const { Readable, Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const S3rver = require('s3rver');
const AWSAccount = require('s3rver/lib/models/account');

const [command, directory = '/data'] = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'));
if (command !== 'server') {
  console.error('MinIO stand-in (s3rver): usage: server <dir> [--console-address <addr>]');
  process.exit(2);
}
const user = process.env.MINIO_ROOT_USER || 'minioadmin';
const password = process.env.MINIO_ROOT_PASSWORD || 'minioadmin';
AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
AWSAccount.DUMMY_ACCOUNT.createKeyPair(user, password);

// path-style only: a host name such as `minio` (the compose service) is not a bucket
const server = new S3rver({ address: '0.0.0.0', port: 9000, directory, silent: false, vhostBuckets: false });
makePutAtomic(server);

/**
 * S3 (and MinIO) never show a partial object and replace objects atomically; s3rver writes a PUT's
 * body straight into the object's file and answers before it is written. As in Ferry's test S3
 * (libs/testing/src/lib/s3-server.ts): the body is received whole, written to a file of its own and
 * renamed over the object's before the PUT is answered.
 */
function makePutAtomic(s3rver) {
  const store = s3rver.store;
  store.putObject = async (object) => {
    let content = object.content;
    if (content instanceof IncomingMessage) {
      const chunks = [];
      for await (const chunk of content) chunks.push(chunk);
      const body = Buffer.concat(chunks);
      const declared = Number(object.metadata?.['x-amz-decoded-content-length'] ?? object.metadata?.['content-length']);
      if (Number.isFinite(declared) && body.length < declared) throw new Error(`PUT cut short: ${body.length} of ${declared} bytes`);
      content = body;
    }
    const path = store.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(dirname(path), { recursive: true });
    const partial = `${path}.${randomBytes(6).toString('hex')}.partial`;
    const md5 = createHash('md5');
    let size = 0;
    const count = new Transform({
      transform(chunk, _encoding, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(Buffer.isBuffer(content) ? Readable.from([content]) : content, count, createWriteStream(partial));
      await rename(partial, path);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}

server.run().then(
  ({ port }) => console.log(`MinIO stand-in (s3rver 3.7.1) serving ${directory} on :${port} for access key ${user}`),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close().then(() => process.exit(0)));
