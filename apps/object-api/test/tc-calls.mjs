// Makes calls with the unmodified Taskcluster client (ESM, so it runs in its own process) and prints
// one JSON result per call: {ok: <value>} or {error: {statusCode, code, message}}.
//   node tc-calls.mjs '<json>'   with json = {rootUrl, calls: [call, ...]}
// A call names its credentials, either permanent ({clientId, accessToken}) or temporary, made with
// taskcluster.createTemporaryCredentials:
//   {temporary: {issuer: {clientId, accessToken}, clientId?, scopes, start, expiry (ms from now),
//                tamper?: {certificate fields to overwrite}, resign?: true (sign the tampered
//                certificate again with the issuer's accessToken: what the client itself refuses to make)}}
// plus optional authorizedScopes, and one operation:
//   {op: 'api', method, args}                  object[method](...args)
//   {op: 'signedUrl', method, args, expiration?} object.buildSignedUrl(object[method], ...args)
//   {op: 'upload', projectId, name, size}      taskcluster.upload() of size pattern bytes: {sha256}
//   {op: 'download', name}                     taskcluster.download(): {sha256, contentType}
import { createHash, createHmac } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import taskcluster from 'taskcluster-client';

const { rootUrl, calls } = JSON.parse(process.argv[2]);

function credentialsOf(call) {
  if (!call.temporary) return call.credentials;
  const t = call.temporary;
  const now = Date.now();
  const creds = taskcluster.createTemporaryCredentials({
    credentials: t.issuer,
    scopes: t.scopes,
    start: new Date(now + t.start),
    expiry: new Date(now + t.expiry),
    ...(t.clientId ? { clientId: t.clientId } : {}),
  });
  if (!t.tamper) return creds;
  const cert = { ...JSON.parse(creds.certificate), ...t.tamper };
  if (t.resign) {
    const lines = ['version:1', ...(cert.issuer ? [`clientId:${creds.clientId}`, `issuer:${cert.issuer}`] : [])];
    lines.push(`seed:${cert.seed}`, `start:${cert.start}`, `expiry:${cert.expiry}`, 'scopes:', ...cert.scopes);
    cert.signature = createHmac('sha256', t.issuer.accessToken).update(lines.join('\n')).digest('base64');
  }
  return { ...creds, certificate: JSON.stringify(cert) };
}

const pattern = (size) => {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) & 0xff;
  return data;
};

async function run(call) {
  const object = new taskcluster.Object({
    rootUrl,
    credentials: credentialsOf(call),
    retries: 0,
    ...(call.authorizedScopes ? { authorizedScopes: call.authorizedScopes } : {}),
  });
  switch (call.op) {
    case 'api':
      return object[call.method](...call.args);
    case 'signedUrl':
      return object.buildSignedUrl(object[call.method], ...call.args, ...(call.expiration ? [{ expiration: call.expiration }] : []));
    case 'upload': {
      const data = pattern(call.size);
      await taskcluster.upload({
        projectId: call.projectId,
        name: call.name,
        contentType: 'application/x-test',
        contentLength: data.length,
        expires: taskcluster.fromNow('1 day'),
        object,
        streamFactory: async () => Readable.from([data]),
        retries: 0,
      });
      return { sha256: createHash('sha256').update(data).digest('hex') };
    }
    case 'download': {
      const sha = createHash('sha256');
      const contentType = await taskcluster.download({
        name: call.name,
        object,
        retries: 0,
        streamFactory: async () =>
          new Writable({
            write(chunk, _enc, cb) {
              sha.update(chunk);
              cb();
            },
          }),
      });
      return { sha256: sha.digest('hex'), contentType };
    }
    default:
      throw new Error(`unknown op ${call.op}`);
  }
}

const results = [];
for (const call of calls) {
  try {
    results.push({ ok: (await run(call)) ?? null });
  } catch (err) {
    results.push({ error: { statusCode: err.statusCode ?? err.response?.statusCode, code: err.code, message: err.message } });
  }
}
console.log(JSON.stringify(results));
