// Drives Ferry's object API with the real Taskcluster client (ESM, so it runs in its own process):
// node tc-client.mjs <rootUrl> <clientId> <accessToken> <projectId> <name> <size> [download-only]
// Uploads <size> pattern bytes under <name> with the client's upload() helper (unless
// download-only), downloads them with download(), and prints {uploaded, downloadedSha256, contentType}.
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import taskcluster from 'taskcluster-client';

const [rootUrl, clientId, accessToken, projectId, name, sizeArg, downloadOnly] = process.argv.slice(2);
const size = Number(sizeArg);
const object = new taskcluster.Object({ rootUrl, credentials: { clientId, accessToken } });
const data = Buffer.alloc(size);
for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) & 0xff;

if (!downloadOnly) {
  await taskcluster.upload({
    projectId,
    name,
    contentType: 'application/x-test',
    contentLength: size,
    expires: taskcluster.fromNow('1 day'),
    object,
    streamFactory: async () => Readable.from([data]),
  });
}
const sha = createHash('sha256');
const contentType = await taskcluster.download({
  name,
  object,
  streamFactory: async () =>
    new Writable({
      write(chunk, _enc, cb) {
        sha.update(chunk);
        cb();
      },
    }),
});
console.log(
  JSON.stringify({ uploadedSha256: createHash('sha256').update(data).digest('hex'), downloadedSha256: sha.digest('hex'), contentType }),
);
