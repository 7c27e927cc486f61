// The load run's status prober (apps/load-e2e), run as a worker thread beside the upload clients:
// with its own event loop, what it times is the server's answer, not the clients' busy loop.
// It makes one upload of its own per protocol, then, every `intervalMs` whatever came before
// (open loop: a slow answer does not delay the next question), asks in turn:
//   QueryWriteStatus (ByteStream)   on a name with 1 MiB committed
//   QueryWriteStatus (GCS)          on a resumable write it started
//   HEAD (tus)                      on an upload with 1 MiB of 2 written
//   start (multipart POST)          the same file again: Synapse's start-or-resume answers its upload
//   GET upload status (multipart)
//   create (tus POST)               a new upload
//   StartResumableWrite (GCS)       a new write
// workerData: { grpcAddress, multipartBase, intervalMs, token }. Post 'stop': it answers
// { samples: {label: ms[]}, errors: {label: count}, loopDelayP99Ms } (then terminate it).
import { createHash, randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { bearer, grpc, loadByteStream } from '../lib/bytestream.mjs';
import { loadStorage } from '../lib/storage.mjs';

const { grpcAddress, multipartBase, intervalMs = 25, token = 'dev-secret' } = workerData;
const MiB = 1024 * 1024;
const CALL_TIMEOUT_MS = 30_000;
const auth = { authorization: `Bearer ${token}` };
const tusHeaders = { ...auth, 'tus-resumable': '1.0.0' };
const BUCKET = 'projects/_/buckets/contract';

const byteStream = new (loadByteStream().ByteStream)(grpcAddress, grpc.credentials.createInsecure());
const storage = new (loadStorage().Storage)(grpcAddress, grpc.credentials.createInsecure());
const deadline = () => ({ deadline: Date.now() + CALL_TIMEOUT_MS });
const unary = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, bearer(token), deadline(), (err, res) => (err ? reject(err) : resolve(res))));

async function http(method, url, headers, body) {
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${text}`);
  return { res, text };
}

/** The probe's own uploads, one per protocol. */
async function setUp() {
  const tag = randomBytes(6).toString('hex');
  const resource = `contract/probe-${tag}.bin`;
  await new Promise((resolve, reject) => {
    const call = byteStream.Write(bearer(token), deadline(), (err) => (err ? reject(err) : resolve()));
    call.write({ resource_name: resource, write_offset: 0, data: randomBytes(MiB), finish_write: false });
    call.end();
  });
  const gcsSpec = () => ({ write_object_spec: { resource: { bucket: BUCKET, name: `probe-${randomBytes(6).toString('hex')}` } } });
  const { upload_id: gcsUpload } = await unary(storage, 'StartResumableWrite', gcsSpec());
  const tusCreate = () =>
    http('POST', `${multipartBase}/files/`, { ...tusHeaders, 'upload-length': String(2 * MiB) }).then(({ res }) =>
      new URL(res.headers.get('location'), multipartBase).toString(),
    );
  const tusUpload = await tusCreate();
  await http(
    'PATCH',
    tusUpload,
    { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
    randomBytes(MiB),
  );
  const size = 10 * MiB;
  const start = JSON.stringify({
    fileName: `probe-${tag}.bin`,
    contentType: 'application/octet-stream',
    contentMD5Hex: createHash('md5').update(randomBytes(size)).digest('hex'),
    fileSizeBytes: size,
    partSizeBytes: 5 * MiB,
  });
  const json = { ...auth, 'content-type': 'application/json' };
  const startMultipart = () => http('POST', `${multipartBase}/file/multipart`, json, start).then(({ text }) => JSON.parse(text).uploadId);
  const multipartUpload = await startMultipart();
  return [
    ['QueryWriteStatus (ByteStream)', () => unary(byteStream, 'QueryWriteStatus', { resource_name: resource })],
    ['QueryWriteStatus (GCS)', () => unary(storage, 'QueryWriteStatus', { upload_id: gcsUpload })],
    ['HEAD (tus)', () => http('HEAD', tusUpload, tusHeaders)],
    ['start (multipart POST)', startMultipart],
    ['GET upload status (multipart)', () => http('GET', `${multipartBase}/file/multipart/${multipartUpload}`, auth)],
    ['create (tus POST)', tusCreate],
    ['StartResumableWrite (GCS)', () => unary(storage, 'StartResumableWrite', gcsSpec())],
  ];
}

const samples = {};
const errors = {};
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
const calls = await setUp();
let turn = 0;
const timer = setInterval(() => {
  const [label, call] = calls[turn++ % calls.length];
  const started = performance.now();
  call().then(
    () => (samples[label] ??= []).push(performance.now() - started),
    () => (errors[label] = (errors[label] ?? 0) + 1),
  );
}, intervalMs);
parentPort.postMessage('ready');
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  loop.disable();
  byteStream.close();
  storage.close();
  parentPort.postMessage({ samples, errors, loopDelayP99Ms: loop.percentile(99) / 1e6 });
});
