import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { ByteStreamClient } from '@ferry/protocol';
import { createHash } from 'node:crypto';
import { TempDir, TestPki, byteStreamClient, jsonOf, makeTestPki, readBytes, request, tempDir, uploadBytes } from '@ferry/testing';
import { IngestHarness, startIngest } from '../testing/ingest.harness';

/**
 * TLS on the gRPC port (FERRY_GRPC_TLS_CERT / _KEY), and mutual TLS (FERRY_GRPC_TLS_CLIENT_CA),
 * with certificates made by openssl for this run and real grpc-js clients over sockets.
 */
describe('TLS on the gRPC port', () => {
  let dir: TempDir;
  let pki: TestPki;
  const clients: ByteStreamClient[] = [];
  const client = (address: string, credentials: grpc.ChannelCredentials) => {
    const c = byteStreamClient(address, credentials);
    clients.push(c);
    return c;
  };
  // short deadlines: a refused handshake makes grpc-js retry the connection until the deadline
  const quick = () => ({ deadline: Date.now() + 3000 });
  const roundTrip = async (c: ByteStreamClient, name: string) => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    expect(await uploadBytes(c, name, data)).toBe(data.length);
    expect((await readBytes(c, name)).data.equals(data)).toBe(true);
  };
  const refused = (c: ByteStreamClient) =>
    new Promise<grpc.ServiceError | undefined>((resolve) =>
      c.QueryWriteStatus({ resource_name: 'tls/anything' }, new grpc.Metadata(), quick(), (err) => resolve(err ?? undefined)),
    );

  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const dev = { authorization: 'Bearer dev-secret' };
  /** PUT then GET of a CAS blob on the HTTP cache port, over https with `tls` (CA, client certificate). */
  const httpRoundTrip = async (base: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }) => {
    const blob = randomBytes(2 * 1024 * 1024 + 5);
    const path = `${base}/cas/${sha(blob)}`;
    const stored = await request(path, { ...tls, method: 'PUT', headers: { ...dev, 'content-length': blob.length }, body: blob });
    expect(stored.status).toBe(200);
    const got = await request(path, { ...tls, headers: dev });
    expect({ status: got.status, sha: sha(got.body) }).toEqual({ status: 200, sha: sha(blob) });
  };

  beforeAll(() => {
    dir = tempDir('ferry-tls');
    pki = makeTestPki(dir.path);
  });

  afterAll(() => {
    for (const c of clients) c.close();
    dir.remove();
  });

  describe('server TLS', () => {
    let h: IngestHarness;

    beforeAll(async () => {
      h = await startIngest({ FERRY_GRPC_TLS_CERT: pki.serverCert.path, FERRY_GRPC_TLS_KEY: pki.serverKey.path });
    });

    afterAll(async () => {
      await h.close();
    });

    it('serves a ByteStream write and read over TLS to a client that trusts the CA', async () => {
      await roundTrip(client(h.address, grpc.credentials.createSsl(pki.ca.pem)), 'tls/round-trip.bin');
      // the name the certificate gives (localhost) works as well as its IP address
      await roundTrip(client(h.address.replace('127.0.0.1', 'localhost'), grpc.credentials.createSsl(pki.ca.pem)), 'tls/by-name.bin');
    });

    it('serves the HTTP cache port over https with the same certificate, and refuses plain http there', async () => {
      expect(h.httpCache).toMatch(/^https:/);
      await httpRoundTrip(h.httpCache, { ca: pki.ca.pem });
      const anonymous = await request(`${h.httpCache}/cas/${sha(Buffer.from('x'))}`, { ca: pki.ca.pem });
      expect({ status: anonymous.status, body: jsonOf(anonymous), challenge: anonymous.headers['www-authenticate'] }).toEqual({
        status: 401,
        body: { code: 'UNAUTHENTICATED', message: expect.stringMatching(/missing credentials/) },
        challenge: 'Bearer',
      });
      await expect(request(`${h.httpCache.replace('https:', 'http:')}/cas/${sha(Buffer.from('x'))}`, { headers: dev })).rejects.toThrow();
      await expect(request(`${h.httpCache}/cas/${sha(Buffer.from('x'))}`, { headers: dev, ca: pki.strangerCert.pem })).rejects.toThrow(
        /self-signed|unable to verify|certificate/,
      );
    });

    it('refuses a plaintext client, and a client that does not trust the certificate', async () => {
      const plain = await refused(client(h.address, grpc.credentials.createInsecure()));
      expect(plain?.code).toBe(grpc.status.UNAVAILABLE);
      const untrusting = await refused(client(h.address, grpc.credentials.createSsl(pki.strangerCert.pem)));
      expect(untrusting?.code).toBe(grpc.status.UNAVAILABLE);
    });
  });

  describe('mutual TLS', () => {
    let h: IngestHarness;

    beforeAll(async () => {
      h = await startIngest({
        FERRY_GRPC_TLS_CERT: pki.serverCert.path,
        FERRY_GRPC_TLS_KEY: pki.serverKey.path,
        FERRY_GRPC_TLS_CLIENT_CA: pki.ca.path,
      });
    });

    afterAll(async () => {
      await h.close();
    });

    it('serves a client presenting a certificate signed by the client CA', async () => {
      await roundTrip(
        client(h.address, grpc.credentials.createSsl(pki.ca.pem, pki.clientKey.pem, pki.clientCert.pem)),
        'mtls/round-trip.bin',
      );
    });

    it('requires the client certificate on the HTTP cache port too', async () => {
      await httpRoundTrip(h.httpCache, { ca: pki.ca.pem, cert: pki.clientCert.pem, key: pki.clientKey.pem });
      const path = `${h.httpCache}/cas/${sha(Buffer.from('x'))}`;
      await expect(request(path, { headers: dev, ca: pki.ca.pem })).rejects.toThrow();
      await expect(request(path, { headers: dev, ca: pki.ca.pem, cert: pki.strangerCert.pem, key: pki.strangerKey.pem })).rejects.toThrow();
    });

    it('refuses a client without a certificate, one whose certificate another CA signed, and plaintext', async () => {
      expect((await refused(client(h.address, grpc.credentials.createSsl(pki.ca.pem))))?.code).toBe(grpc.status.UNAVAILABLE);
      expect(
        (await refused(client(h.address, grpc.credentials.createSsl(pki.ca.pem, pki.strangerKey.pem, pki.strangerCert.pem))))?.code,
      ).toBe(grpc.status.UNAVAILABLE);
      expect((await refused(client(h.address, grpc.credentials.createInsecure())))?.code).toBe(grpc.status.UNAVAILABLE);
    });
  });
});
