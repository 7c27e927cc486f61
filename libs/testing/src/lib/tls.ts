import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** PEM files of a test PKI, each with its path and contents. */
export interface PemFile {
  path: string;
  pem: Buffer;
}

export interface TestPki {
  /** The CA that signed the server's and the client's certificates. */
  ca: PemFile;
  /** The server's certificate (CN localhost; SAN DNS:localhost, IP:127.0.0.1, IP:::1) and key. */
  serverCert: PemFile;
  serverKey: PemFile;
  /** A client certificate (CN `client`) signed by `ca`, and its key. */
  clientCert: PemFile;
  clientKey: PemFile;
  /** A client certificate and key signed by another CA (a mutual-TLS server must refuse it). */
  strangerCert: PemFile;
  strangerKey: PemFile;
}

const openssl = (dir: string, args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });

function file(dir: string, name: string): PemFile {
  const path = join(dir, name);
  return { path, pem: readFileSync(path) };
}

function selfSignedCa(dir: string, name: string, cn: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=${cn}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

function signedCert(dir: string, name: string, ca: string, cn: string, extensions: string): void {
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
}

/**
 * Generates, with the `openssl` command, a CA, a server certificate for localhost / 127.0.0.1
 * signed by it, a client certificate signed by it, and a client certificate signed by another CA,
 * in `dir` (two days of validity; RSA 2048, which every TLS client takes).
 */
export function makeTestPki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  selfSignedCa(dir, 'ca', 'Ferry test CA');
  selfSignedCa(dir, 'stranger-ca', 'Some other CA');
  signedCert(
    dir,
    'server',
    'ca',
    'localhost',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n',
  );
  const clientExt = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';
  signedCert(dir, 'client', 'ca', 'client', clientExt);
  signedCert(dir, 'stranger', 'stranger-ca', 'stranger', clientExt);
  return {
    ca: file(dir, 'ca.pem'),
    serverCert: file(dir, 'server.pem'),
    serverKey: file(dir, 'server.key'),
    clientCert: file(dir, 'client.pem'),
    clientKey: file(dir, 'client.key'),
    strangerCert: file(dir, 'stranger.pem'),
    strangerKey: file(dir, 'stranger.key'),
  };
}
