import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEV_CLIENT, DEV_SIGNING_KEY, corsOriginOf, isGcsBucketName, loadConfig } from './config';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({});
    expect(c.host).toBe('127.0.0.1');
    expect(c.ports).toEqual({ grpc: 50051, grpcMetrics: 8083, cacheHttp: 8084, multipart: 8081, object: 8080, worker: 8082 });
    expect(c.grpc.tls).toBeUndefined();
    expect(c.redis.url).toBe('redis://127.0.0.1:6379');
    expect(c.storage).toBe('fs');
    expect(c.uploads.idleLifetimeMs).toBe(86_400_000);
    expect(c.grpc.maxMessageBytes).toBe(16 * 1024 * 1024);
    expect(c.auth).toEqual({ clients: [DEV_CLIENT], devMode: true });
    expect(c.dataDir.endsWith('/data')).toBe(true);
    expect(c.heapGrowingPercent).toBe(300);
    expect(c.cors).toBeUndefined();
  });

  it('takes the heap growing percent, 0 included, and refuses anything else', () => {
    expect(loadConfig({ FERRY_HEAP_GROWING_PERCENT: '0' }).heapGrowingPercent).toBe(0);
    expect(loadConfig({ FERRY_HEAP_GROWING_PERCENT: '150' }).heapGrowingPercent).toBe(150);
    expect(() => loadConfig({ FERRY_HEAP_GROWING_PERCENT: '-1' })).toThrow(/FERRY_HEAP_GROWING_PERCENT/);
    expect(() => loadConfig({ FERRY_HEAP_GROWING_PERCENT: 'x' })).toThrow(/FERRY_HEAP_GROWING_PERCENT/);
  });

  it('bounds the cache only when asked, with watermarks in order', () => {
    expect(loadConfig({}).reapi.cache).toEqual({ maxBytes: 0, highBytes: 0, lowBytes: 0, minAgeMs: 60_000 });
    expect(loadConfig({ FERRY_CACHE_MAX_BYTES: '1000', FERRY_CACHE_MIN_AGE_MS: '0' }).reapi.cache).toEqual({
      maxBytes: 1000,
      highBytes: 900,
      lowBytes: 800,
      minAgeMs: 0,
    });
    expect(() => loadConfig({ FERRY_CACHE_MAX_BYTES: '-1' })).toThrow(/FERRY_CACHE_MAX_BYTES/);
    expect(() => loadConfig({ FERRY_CACHE_HIGH_WATERMARK: '1.5' })).toThrow(/FERRY_CACHE_HIGH_WATERMARK/);
    expect(() => loadConfig({ FERRY_CACHE_LOW_WATERMARK: '0.95' })).toThrow(/FERRY_CACHE_LOW_WATERMARK \(0.95\) must be below/);
  });

  it('names the bad variable', () => {
    expect(() => loadConfig({ FERRY_GRPC_PORT: 'abc' })).toThrow(/FERRY_GRPC_PORT/);
    expect(() => loadConfig({ REDIS_URL: 'http://x' })).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ FERRY_STORAGE: 'nfs' })).toThrow(/FERRY_STORAGE/);
  });

  it('takes the S3 settings when FERRY_STORAGE=s3, naming what is missing or wrong', () => {
    expect(loadConfig({}).s3).toBeUndefined();
    expect(() => loadConfig({ FERRY_STORAGE: 's3' })).toThrow(/FERRY_S3_BUCKET: required/);
    expect(() => loadConfig({ FERRY_STORAGE: 's3', FERRY_S3_BUCKET: 'Not_A_Bucket' })).toThrow(/FERRY_S3_BUCKET/);
    expect(() => loadConfig({ FERRY_STORAGE: 's3', FERRY_S3_BUCKET: 'b1b', FERRY_S3_PART_SIZE: '1048576' })).toThrow(
      /FERRY_S3_PART_SIZE: at least 5 MiB/,
    );
    expect(() => loadConfig({ FERRY_STORAGE: 's3', FERRY_S3_BUCKET: 'b1b', FERRY_S3_ACCESS_KEY_ID: 'k' })).toThrow(/set both, or neither/);
    expect(() => loadConfig({ FERRY_STORAGE: 's3', FERRY_S3_BUCKET: 'b1b', FERRY_S3_FORCE_PATH_STYLE: 'maybe' })).toThrow(
      /FERRY_S3_FORCE_PATH_STYLE/,
    );
    const c = loadConfig({
      FERRY_STORAGE: 's3',
      FERRY_S3_BUCKET: 'ferry-data',
      FERRY_S3_ENDPOINT: 'http://minio:9000',
      FERRY_S3_FORCE_PATH_STYLE: 'true',
      FERRY_S3_ACCESS_KEY_ID: 'k',
      FERRY_S3_SECRET_ACCESS_KEY: 's',
      FERRY_S3_CREATE_BUCKET: '1',
    });
    expect(c.s3).toEqual({
      endpoint: 'http://minio:9000',
      publicEndpoint: undefined,
      bucket: 'ferry-data',
      region: 'us-east-1',
      accessKeyId: 'k',
      secretAccessKey: 's',
      forcePathStyle: true,
      partBytes: 8 * 1024 * 1024,
      createBucket: true,
    });
  });

  it('refuses to listen beyond loopback in development mode', () => {
    expect(() => loadConfig({ FERRY_HOST: '0.0.0.0' })).toThrow(ConfigError);
    const clients = JSON.stringify([{ clientId: 'a', accessToken: 'secret-token-a', scopes: ['*'] }]);
    expect(loadConfig({ FERRY_HOST: '0.0.0.0', FERRY_CLIENTS: clients }).auth.devMode).toBe(false);
  });

  it('reads clients from FERRY_CLIENTS_FILE and validates them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-config-'));
    const file = join(dir, 'clients.json');
    writeFileSync(file, JSON.stringify([{ clientId: 'ci', accessToken: 'ci-secret-1', scopes: ['ferry:read:*'] }]));
    expect(loadConfig({ FERRY_CLIENTS_FILE: file }).auth.clients).toEqual([
      { clientId: 'ci', accessToken: 'ci-secret-1', scopes: ['ferry:read:*'] },
    ]);
    writeFileSync(file, '[{"clientId":"x"}]');
    expect(() => loadConfig({ FERRY_CLIENTS_FILE: file })).toThrow(/FERRY_CLIENTS_FILE: 0.accessToken/);
    expect(() => loadConfig({ FERRY_CLIENTS: 'not json' })).toThrow(/FERRY_CLIENTS: not valid JSON/);
    expect(() => loadConfig({ FERRY_CLIENTS_FILE: join(dir, 'missing.json') })).toThrow(/cannot read/);
  });
});

describe('signing key', () => {
  const clients = JSON.stringify([{ clientId: 'a', accessToken: 'secret-token-a', scopes: ['*'] }]);

  it('has a public default in development mode only', () => {
    expect(loadConfig({}, ['signingKey']).signingKey).toBe(DEV_SIGNING_KEY);
    expect(loadConfig({ FERRY_CLIENTS: clients }).signingKey).toBeUndefined();
  });

  it('is required, and long enough, where an app signs URLs outside development mode', () => {
    expect(() => loadConfig({ FERRY_CLIENTS: clients }, ['signingKey'])).toThrow(/FERRY_SIGNING_KEY: required/);
    expect(() => loadConfig({ FERRY_SIGNING_KEY: 'short' })).toThrow(/FERRY_SIGNING_KEY: at least 32/);
    const key = 'k'.repeat(32);
    expect(loadConfig({ FERRY_CLIENTS: clients, FERRY_SIGNING_KEY: key }, ['signingKey']).signingKey).toBe(key);
  });

  it('validates the public URL of signed links', () => {
    expect(loadConfig({ FERRY_PUBLIC_URL_MULTIPART: 'https://up.example.org/' }).multipart.publicUrl).toBe('https://up.example.org');
    expect(() => loadConfig({ FERRY_PUBLIC_URL_MULTIPART: 'https://x/y' })).toThrow(/FERRY_PUBLIC_URL_MULTIPART/);
  });
});

describe('GCS buckets', () => {
  it('takes the GCS bucket list (unset: any valid name) and checks every name', () => {
    expect(loadConfig({}).gcs.buckets).toBeUndefined();
    expect(loadConfig({ FERRY_GCS_BUCKETS: '' }).gcs.buckets).toBeUndefined();
    expect(loadConfig({ FERRY_GCS_BUCKETS: 'builds, logs.example.org' }).gcs.buckets).toEqual(['builds', 'logs.example.org']);
    expect(() => loadConfig({ FERRY_GCS_BUCKETS: 'okay,Bad' })).toThrow(/FERRY_GCS_BUCKETS.*Bad: not a valid bucket name/);
  });
});

describe('isGcsBucketName', () => {
  it.each(['abc', 'a-b_c.d', '0bucket9', `${'a'.repeat(63)}.${'b'.repeat(63)}`])('accepts %s', (name) => {
    expect(isGcsBucketName(name)).toBe(true);
  });

  it.each(['ab', 'Abc', '-abc', 'abc-', 'a..b', 'a/b', '192.168.0.1', 'goog-x', 'my-google-bucket', 'a'.repeat(64)])(
    'refuses %s',
    (name) => {
      expect(isGcsBucketName(name)).toBe(false);
    },
  );
});

describe('anonymous scopes', () => {
  it('are unset by default and a comma-separated list otherwise', () => {
    expect(loadConfig({}).auth.anonymousScopes).toBeUndefined();
    expect(loadConfig({ FERRY_ANONYMOUS_SCOPES: 'ferry:write:ci/uploads/*, ferry:read:ci/blobs/*' }).auth.anonymousScopes).toEqual([
      'ferry:write:ci/uploads/*',
      'ferry:read:ci/blobs/*',
    ]);
  });
});

describe('REAPI zero resume', () => {
  it('is auto by default, takes always or never, and refuses anything else', () => {
    expect(loadConfig({}).reapi.zeroResume).toBe('auto');
    expect(loadConfig({ FERRY_REAPI_ZERO_RESUME: 'always' }).reapi.zeroResume).toBe('always');
    expect(loadConfig({ FERRY_REAPI_ZERO_RESUME: 'never' }).reapi.zeroResume).toBe('never');
    expect(() => loadConfig({ FERRY_REAPI_ZERO_RESUME: 'sometimes' })).toThrow(ConfigError);
    expect(() => loadConfig({ FERRY_REAPI_ZERO_RESUME: 'Never' })).toThrow(
      /invalid configuration: FERRY_REAPI_ZERO_RESUME: auto, always or never/,
    );
  });
});

describe('Redis Cluster settings', () => {
  it('accepts a cluster URL in REDIS_URL, or the nodes in REDIS_CLUSTER_NODES', () => {
    expect(loadConfig({ REDIS_URL: 'redis+cluster://a:7000,b:7001' }).redis.url).toBe('redis+cluster://a:7000,b:7001');
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:7000,b:7001' }).redis.url).toBe('redis+cluster://a:7000,b:7001');
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'a,b' })).toThrow(/REDIS_CLUSTER_NODES/);
    expect(() => loadConfig({ REDIS_URL: 'cluster://a:1' })).toThrow(/REDIS_URL/);
  });
});

describe('ingest-grpc ports and TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-config-tls-'));
  const path = (name: string) => join(dir, name);
  beforeAll(() => {
    for (const name of ['a', 'b']) {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-subj',
          `/CN=${name}`,
          '-days',
          '1',
          '-keyout',
          path(`${name}.key`),
          '-out',
          path(`${name}.pem`),
        ],
        { stdio: 'ignore' },
      );
    }
    writeFileSync(path('junk.pem'), 'not a certificate\n');
  });

  it('takes the HTTP cache port', () => {
    expect(loadConfig({ FERRY_CACHE_HTTP_PORT: '9094' }).ports.cacheHttp).toBe(9094);
    expect(() => loadConfig({ FERRY_CACHE_HTTP_PORT: '70000' })).toThrow(/FERRY_CACHE_HTTP_PORT/);
  });

  it('reads the certificate, its key and the client CA', () => {
    const tls = loadConfig({ FERRY_GRPC_TLS_CERT: path('a.pem'), FERRY_GRPC_TLS_KEY: path('a.key') }).grpc.tls;
    expect(tls?.cert.toString()).toContain('BEGIN CERTIFICATE');
    expect(tls?.key.toString()).toContain('PRIVATE KEY');
    expect(tls?.clientCa).toBeUndefined();
    const mutual = loadConfig({
      FERRY_GRPC_TLS_CERT: path('a.pem'),
      FERRY_GRPC_TLS_KEY: path('a.key'),
      FERRY_GRPC_TLS_CLIENT_CA: path('b.pem'),
    });
    expect(mutual.grpc.tls?.clientCa?.toString()).toContain('BEGIN CERTIFICATE');
    // set to '' (as compose files do): unset
    expect(loadConfig({ FERRY_GRPC_TLS_CERT: '', FERRY_GRPC_TLS_KEY: '' }).grpc.tls).toBeUndefined();
  });

  it('wants both the certificate and the key, or neither, and the client CA only with them', () => {
    expect(() => loadConfig({ FERRY_GRPC_TLS_CERT: path('a.pem') })).toThrow(
      /^FERRY_GRPC_TLS_KEY: required with FERRY_GRPC_TLS_CERT \(set both, or neither for plaintext\)$/,
    );
    expect(() => loadConfig({ FERRY_GRPC_TLS_KEY: path('a.key') })).toThrow(/^FERRY_GRPC_TLS_CERT: required with FERRY_GRPC_TLS_KEY/);
    expect(() => loadConfig({ FERRY_GRPC_TLS_CLIENT_CA: path('b.pem') })).toThrow(
      /^FERRY_GRPC_TLS_CLIENT_CA: mutual TLS needs FERRY_GRPC_TLS_CERT and FERRY_GRPC_TLS_KEY too$/,
    );
  });

  it('names the file that is missing, not PEM, or does not fit', () => {
    expect(() => loadConfig({ FERRY_GRPC_TLS_CERT: path('none.pem'), FERRY_GRPC_TLS_KEY: path('a.key') })).toThrow(
      /^FERRY_GRPC_TLS_CERT: cannot read .*none\.pem/,
    );
    expect(() => loadConfig({ FERRY_GRPC_TLS_CERT: path('junk.pem'), FERRY_GRPC_TLS_KEY: path('a.key') })).toThrow(
      /^FERRY_GRPC_TLS_CERT: .*junk\.pem holds no PEM certificate$/,
    );
    expect(() => loadConfig({ FERRY_GRPC_TLS_CERT: path('a.pem'), FERRY_GRPC_TLS_KEY: path('a.pem') })).toThrow(
      /^FERRY_GRPC_TLS_KEY: .*a\.pem holds no PEM private key$/,
    );
    expect(() => loadConfig({ FERRY_GRPC_TLS_CERT: path('a.pem'), FERRY_GRPC_TLS_KEY: path('b.key') })).toThrow(
      /^FERRY_GRPC_TLS_CERT \/ FERRY_GRPC_TLS_KEY: not a usable certificate and key: .*mismatch/,
    );
    expect(() =>
      loadConfig({ FERRY_GRPC_TLS_CERT: path('a.pem'), FERRY_GRPC_TLS_KEY: path('a.key'), FERRY_GRPC_TLS_CLIENT_CA: path('junk.pem') }),
    ).toThrow(/^FERRY_GRPC_TLS_CLIENT_CA: .*junk\.pem holds no PEM certificate$/);
  });
});

describe('CORS origins (FERRY_CORS_ORIGINS)', () => {
  it('are off when unset, empty or blank, development mode included', () => {
    expect(loadConfig({}).cors).toBeUndefined();
    expect(loadConfig({ FERRY_CORS_ORIGINS: '' }).cors).toBeUndefined();
    expect(loadConfig({ FERRY_CORS_ORIGINS: ' , ' }).cors).toBeUndefined();
  });

  it('take exact origins, normalised as browsers send Origin, or * alone', () => {
    expect(loadConfig({ FERRY_CORS_ORIGINS: 'https://app.example.com' }).cors).toEqual({ origins: ['https://app.example.com'] });
    expect(
      loadConfig({ FERRY_CORS_ORIGINS: ' https://App.Example.com:443/, http://localhost:5173,http://[::1]:8000 , https://app.example.com' })
        .cors,
    ).toEqual({ origins: ['https://app.example.com', 'http://localhost:5173', 'http://[::1]:8000'] });
    expect(loadConfig({ FERRY_CORS_ORIGINS: '*' }).cors).toEqual({ origins: '*' });
    expect(loadConfig({ FERRY_CORS_ORIGINS: ' * ' }).cors).toEqual({ origins: '*' });
  });

  it.each([
    ['app.example.com', /FERRY_CORS_ORIGINS: app.example.com: not an origin/],
    ['https://app.example.com/upload', /FERRY_CORS_ORIGINS: https:\/\/app.example.com\/upload: not an origin/],
    ['https://app.example.com?x=1', /FERRY_CORS_ORIGINS/],
    ['https://user@app.example.com', /FERRY_CORS_ORIGINS/],
    ['ftp://app.example.com', /FERRY_CORS_ORIGINS/],
    ['https://app.example.com:99999', /FERRY_CORS_ORIGINS/],
    ['https://*.example.com', /FERRY_CORS_ORIGINS/],
    ['https://ok.example.com,/relative', /FERRY_CORS_ORIGINS: \/relative: not an origin/],
    ['*,https://app.example.com', /FERRY_CORS_ORIGINS: \* allows every origin/],
  ])('refuses %s, naming the variable', (value, message) => {
    expect(() => loadConfig({ FERRY_CORS_ORIGINS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ FERRY_CORS_ORIGINS: value })).toThrow(message);
  });

  it('corsOriginOf gives the serialized origin or nothing', () => {
    expect(corsOriginOf('HTTP://LOCALHOST:80')).toBe('http://localhost');
    expect(corsOriginOf('https://a.example:8443')).toBe('https://a.example:8443');
    expect(corsOriginOf('https://a.example/#x')).toBeUndefined();
    expect(corsOriginOf('null')).toBeUndefined();
  });
});
