import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';

/**
 * Ferry's configuration: parsed and validated once per process from the environment.
 * Nothing else in Ferry reads `process.env`.
 */
export interface ClientConfig {
  clientId: string;
  accessToken: string;
  scopes: string[];
}

export interface FerryConfig {
  host: string;
  /**
   * `grpcMetrics`: ingest-grpc's HTTP listener for /metrics and /healthz (gRPC has no such routes);
   * `cacheHttp`: ingest-grpc's Bazel HTTP cache (`/ac/`, `/cas/`).
   */
  ports: { grpc: number; grpcMetrics: number; cacheHttp: number; multipart: number; object: number; worker: number };
  redis: { url: string; prefix: string };
  dataDir: string;
  storage: 'fs' | 's3';
  /** The bucket when `storage` is 's3' (FERRY_S3_*). */
  s3?: {
    endpoint?: string;
    /** The endpoint presigned URLs name, when clients reach the store by another address than Ferry does. */
    publicEndpoint?: string;
    bucket: string;
    region: string;
    accessKeyId?: string;
    secretAccessKey?: string;
    forcePathStyle: boolean;
    /** Staging part size: the committed size of a ByteStream/GCS/object upload advances in these steps. */
    partBytes: number;
    /** Create the bucket on first use if it does not exist. */
    createBucket: boolean;
  };
  uploads: {
    /** Unfinished uploads untouched this long are removed. */
    idleLifetimeMs: number;
    /** A writer's lease lasts this long unless renewed; a crashed writer blocks its upload at most this long. */
    leaseTtlMs: number;
    /** Committed size advances after this many bytes are written... */
    fsyncBytes: number;
    /** ...or after this long, whichever comes first. */
    fsyncIntervalMs: number;
    /** Longest accepted resource/object name, in UTF-8 bytes. */
    maxNameBytes: number;
  };
  grpc: {
    maxMessageBytes: number;
    /** HTTP/2 flow-control window (per stream and per connection) of the gRPC server. */
    flowControlWindowBytes: number;
    /**
     * A client-streaming upload (ByteStream Write, GCS WriteObject / BidiWriteObject) that sends no
     * message for this long is ended with DEADLINE_EXCEEDED: what it sent stays, its lease is freed.
     */
    streamIdleMs: number;
    /** TLS of ingest-grpc's gRPC port and HTTP cache port; undefined: plaintext. */
    tls?: TlsConfig;
  };
  worker: {
    expireIntervalMs: number;
    concurrency: number;
    /** A job whose worker stops renewing its lock this long is taken over by another worker. */
    jobLockMs: number;
  };
  multipart: {
    /** `complete` waits this long for the assembly before answering 202 (call again for the result). */
    completeWaitMs: number;
    /** Most part numbers one presigned-URL batch may ask for. */
    maxUrlBatch: number;
    /** `complete` assembles in multipart-api when at most this many bytes are left to hash (more: the worker's job; 0: always the job). */
    inlineCompleteBytes: number;
    /** Base URL signed URLs name (scheme://host:port); unset: the Host the request came to. */
    publicUrl?: string;
  };
  tus: {
    /** Largest upload accepted (Tus-Max-Size). */
    maxSize: number;
    /** Unfinished tus uploads expire this long after their creation (Upload-Expires). */
    uploadLifetimeMs: number;
  };
  objects: {
    /** Base URL of signed object URLs (putUrl, getUrl); unset: the Host the request came to. */
    publicUrl?: string;
    /** Unfinished object uploads expire this long after they began. */
    uploadLifetimeMs: number;
    /** A blob is collected only after it has had no reference this long. */
    blobGraceMs: number;
  };
  gcs: {
    /** The buckets that exist (GCS face); undefined: any valid bucket name exists. */
    buckets?: string[];
  };
  reapi: {
    /** REAPI instance names served; undefined: any valid instance name. */
    instances?: string[];
    /** max_batch_total_size_bytes: most blob bytes in one BatchUpdateBlobs / BatchReadBlobs. */
    maxBatchBytes: number;
    /** max_cas_blob_size_bytes: largest CAS blob accepted; 0: no limit. */
    maxBlobBytes: number;
    /** An action cache entry not read or written this long is forgotten. */
    actionCacheTtlMs: number;
    /**
     * Who QueryWriteStatus tells 0 for an unfinished REAPI upload: `auto` only Bazel releases that
     * fail on a partial size (1.2 to 2.1, by their request metadata), `always` every client,
     * `never` none (all get the committed size). See ByteStreamService in @ferry/bytestream.
     */
    zeroResume: 'auto' | 'always' | 'never';
    /** The bounded cache (FERRY_CACHE_*; maxBytes 0: unbounded). See BoundedCache in @ferry/cache. */
    cache: { maxBytes: number; highBytes: number; lowBytes: number; minAgeMs: number };
  };
  /**
   * CORS of multipart-api and object-api (FERRY_CORS_ORIGINS): the browser origins allowed to call
   * them from other pages. Undefined: CORS off (no Access-Control-* headers at all).
   * See corsMiddleware in @ferry/http.
   */
  cors?: CorsConfig;
  /** Signed URLs (presigned parts, downloads, putUrl, getUrl) stay valid this long. */
  signedUrlTtlMs: number;
  /** Key for HMAC-signed URLs; shared by every replica. Undefined only outside development mode when unset. */
  signingKey?: string;
  /**
   * `anonymousScopes`: what a request without credentials may do (unset: nothing, it is refused).
   * For clients that cannot send credentials on every call (Bazel 2.x sends none on ByteStream).
   */
  auth: { clients: ClientConfig[]; devMode: boolean; anonymousScopes?: string[] };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * V8's old-generation growing factor, in percent over the live heap (`--heap-growing-percent`);
   * 0 leaves V8's own heuristic. See `tuneHeap` in @ferry/core for why Ferry sets it.
   */
  heapGrowingPercent: number;
}

/** Allowed browser origins: exact serialized origins (`https://app.example.com`, no default port), or `*` for any. */
export interface CorsConfig {
  origins: '*' | string[];
}

/** PEM material read (and checked) at start from the FERRY_GRPC_TLS_* files. */
export interface TlsConfig {
  /** The server's certificate chain (FERRY_GRPC_TLS_CERT). */
  cert: Buffer;
  /** Its private key (FERRY_GRPC_TLS_KEY). */
  key: Buffer;
  /** Mutual TLS: clients must present a certificate signed by one of these (FERRY_GRPC_TLS_CLIENT_CA). */
  clientCa?: Buffer;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The signing key of development mode: public, like the dev client's token (loopback only). */
export const DEV_SIGNING_KEY = 'ferry-development-signing-key-not-a-secret';

export const DEV_CLIENT: ClientConfig = { clientId: 'dev', accessToken: 'dev-secret', scopes: ['*'] };

/** An optional variable set to the empty string (as compose files often do) counts as unset. */
const unsetIfEmpty = <T extends z.ZodTypeAny>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema);

/** `scheme://host[:port]` that signed URLs name, when it differs from the Host requests arrive at. */
const publicUrl = unsetIfEmpty(
  z
    .string()
    .url()
    .regex(/^https?:\/\/[^/?#]+\/?$/, 'scheme://host[:port] only')
    .optional(),
);

/**
 * Cloud Storage bucket naming rules: 3-63 characters (up to 222 with dots, 63 per dot-separated
 * part) of lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit;
 * not an IP address; not starting with `goog` nor containing `google`.
 */
export function isGcsBucketName(name: string): boolean {
  if (!/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/.test(name) || name.length < 3) return false;
  if (name.length > (name.includes('.') ? 222 : 63) || name.split('.').some((part) => part.length === 0 || part.length > 63)) return false;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return false;
  return !name.startsWith('goog') && !name.includes('google');
}

const bucketList = unsetIfEmpty(
  z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((b) => b.trim())
        .filter((b) => b !== ''),
    )
    .refine((list) => list.length > 0, 'at least one bucket name')
    .superRefine((list, ctx) => {
      for (const b of list)
        if (!isGcsBucketName(b)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${b}: not a valid bucket name` });
    })
    .optional(),
);

/**
 * An entry of FERRY_CORS_ORIGINS as browsers serialize the Origin header (lowercase scheme and host,
 * default port omitted), or undefined when it is not `http(s)://host[:port]` (a path, a query,
 * credentials, a wildcard or a missing scheme: Origin never carries them, so such an entry would
 * match nothing).
 */
export function corsOriginOf(entry: string): string | undefined {
  // a DNS name (punycode, as Origin carries it), an IPv4 address or a bracketed IPv6 one; no wildcards
  if (!/^https?:\/\/([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d+)?\/?$/i.test(entry)) return undefined;
  try {
    return new URL(entry).origin;
  } catch {
    return undefined;
  }
}

/** `*`, or a comma-separated list of origins; unset, empty or only commas: CORS off. */
const corsOrigins = unsetIfEmpty(
  z
    .string()
    .transform((v, ctx): CorsConfig | undefined => {
      const entries = v
        .split(',')
        .map((o) => o.trim())
        .filter((o) => o !== '');
      if (entries.length === 0) return undefined;
      if (entries.includes('*')) {
        if (entries.length > 1) ctx.addIssue({ code: z.ZodIssueCode.custom, message: '* allows every origin: list no others with it' });
        return { origins: '*' };
      }
      const origins: string[] = [];
      for (const entry of entries) {
        const origin = corsOriginOf(entry);
        if (origin === undefined) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${entry}: not an origin (http(s)://host[:port], no path), nor *` });
        } else if (!origins.includes(origin)) origins.push(origin);
      }
      return { origins };
    })
    .optional(),
);

const port = z.coerce.number().int().min(0).max(65535);
/** true/false, 1/0, yes/no. */
const flag = z
  .string()
  .regex(/^(true|false|1|0|yes|no)$/i, 'true or false')
  .transform((v) => /^(true|1|yes)$/i.test(v));
const positiveInt = z.coerce.number().int().positive();

const clientsSchema = z
  .array(
    z
      .object({
        clientId: z.string().min(1),
        accessToken: z.string().min(8, 'accessToken must be at least 8 characters'),
        scopes: z.array(z.string()).default([]),
      })
      .strict(),
  )
  .superRefine((clients, ctx) => {
    const seen = new Set<string>();
    for (const c of clients) {
      if (seen.has(c.clientId)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `duplicate clientId ${c.clientId}` });
      seen.add(c.clientId);
    }
  });

const envSchema = z.object({
  FERRY_HOST: z.string().min(1).default('127.0.0.1'),
  FERRY_GRPC_PORT: port.default(50051),
  FERRY_GRPC_METRICS_PORT: port.default(8083),
  FERRY_CACHE_HTTP_PORT: port.default(8084),
  FERRY_GRPC_TLS_CERT: unsetIfEmpty(z.string().optional()),
  FERRY_GRPC_TLS_KEY: unsetIfEmpty(z.string().optional()),
  FERRY_GRPC_TLS_CLIENT_CA: unsetIfEmpty(z.string().optional()),
  FERRY_MULTIPART_PORT: port.default(8081),
  FERRY_OBJECT_PORT: port.default(8080),
  FERRY_WORKER_PORT: port.default(8082),
  REDIS_URL: z
    .string()
    .regex(/^rediss?(\+cluster)?:\/\//, 'must start with redis://, rediss://, redis+cluster:// or rediss+cluster://')
    .default('redis://127.0.0.1:6379'),
  REDIS_CLUSTER_NODES: unsetIfEmpty(
    z
      .string()
      .regex(/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/, 'host:port,host:port,...')
      .optional(),
  ),
  FERRY_REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only')
    .default('ferry'),
  FERRY_DATA_DIR: z.string().min(1).default('./data'),
  FERRY_STORAGE: z.enum(['fs', 's3']).default('fs'),
  FERRY_S3_ENDPOINT: unsetIfEmpty(z.string().url().optional()),
  FERRY_S3_PUBLIC_ENDPOINT: unsetIfEmpty(z.string().url().optional()),
  FERRY_S3_BUCKET: unsetIfEmpty(
    z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)')
      .optional(),
  ),
  FERRY_S3_REGION: z.string().min(1).default('us-east-1'),
  FERRY_S3_ACCESS_KEY_ID: unsetIfEmpty(z.string().optional()),
  FERRY_S3_SECRET_ACCESS_KEY: unsetIfEmpty(z.string().optional()),
  FERRY_S3_FORCE_PATH_STYLE: flag.default('false'),
  FERRY_S3_PART_SIZE: z.coerce
    .number()
    .int()
    .min(5 * 1024 * 1024, 'at least 5 MiB (the smallest S3 part)')
    .max(5 * 1024 * 1024 * 1024, 'at most 5 GiB (the largest S3 part)')
    .default(8 * 1024 * 1024),
  FERRY_S3_CREATE_BUCKET: flag.default('false'),
  FERRY_UPLOAD_IDLE_TTL_MS: positiveInt.default(24 * 60 * 60 * 1000),
  FERRY_LEASE_TTL_MS: z.coerce.number().int().min(200).default(10_000),
  FERRY_FSYNC_BYTES: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .default(8 * 1024 * 1024),
  FERRY_FSYNC_INTERVAL_MS: z.coerce.number().int().min(1).default(50),
  FERRY_MAX_NAME_BYTES: z.coerce.number().int().min(64).max(8192).default(1024),
  FERRY_GRPC_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .min(4 * 1024 * 1024)
    .default(16 * 1024 * 1024),
  FERRY_GRPC_WINDOW_BYTES: z.coerce
    .number()
    .int()
    .min(65_535)
    .max(2 ** 31 - 1)
    .default(8 * 1024 * 1024),
  FERRY_GRPC_STREAM_IDLE_MS: z.coerce.number().int().min(100).default(60_000),
  FERRY_EXPIRE_INTERVAL_MS: positiveInt.default(60_000),
  FERRY_WORKER_CONCURRENCY: positiveInt.default(2),
  FERRY_JOB_LOCK_MS: z.coerce.number().int().min(500).default(30_000),
  FERRY_SIGNED_URL_TTL_MS: z.coerce
    .number()
    .int()
    .min(1000)
    .default(15 * 60 * 1000),
  FERRY_MULTIPART_COMPLETE_WAIT_MS: z.coerce.number().int().min(0).default(30_000),
  FERRY_MULTIPART_MAX_URL_BATCH: z.coerce.number().int().min(1).max(10_000).default(1000),
  FERRY_MULTIPART_INLINE_COMPLETE_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(256 * 1024 * 1024),
  FERRY_PUBLIC_URL_MULTIPART: publicUrl,
  FERRY_PUBLIC_URL_OBJECT: publicUrl,
  FERRY_OBJECT_UPLOAD_TTL_MS: positiveInt.default(24 * 60 * 60 * 1000),
  FERRY_TUS_MAX_SIZE: positiveInt.default(5 * 1024 ** 4),
  FERRY_TUS_UPLOAD_TTL_MS: positiveInt.default(24 * 60 * 60 * 1000),
  FERRY_BLOB_GRACE_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(10 * 60 * 1000),
  FERRY_GCS_BUCKETS: bucketList,
  FERRY_REAPI_INSTANCES: unsetIfEmpty(
    z
      .string()
      .transform((v) => v.split(',').map((i) => i.trim()))
      .optional(),
  ),
  FERRY_REAPI_MAX_BATCH_BYTES: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .max(15 * 1024 * 1024)
    .default(4 * 1024 * 1024),
  FERRY_CAS_MAX_BLOB_BYTES: z.coerce.number().int().min(0).default(0),
  FERRY_ACTION_CACHE_TTL_MS: positiveInt.default(7 * 24 * 60 * 60 * 1000),
  FERRY_CACHE_MAX_BYTES: z.coerce.number().int().min(0).default(0),
  FERRY_CACHE_HIGH_WATERMARK: z.coerce.number().gt(0).max(1).default(0.9),
  FERRY_CACHE_LOW_WATERMARK: z.coerce.number().gt(0).max(1).default(0.8),
  FERRY_CACHE_MIN_AGE_MS: z.coerce.number().int().min(0).default(60_000),
  FERRY_REAPI_ZERO_RESUME: z.enum(['auto', 'always', 'never'], { errorMap: () => ({ message: 'auto, always or never' }) }).default('auto'),
  FERRY_CORS_ORIGINS: corsOrigins,
  FERRY_SIGNING_KEY: unsetIfEmpty(z.string().min(32, 'at least 32 characters').optional()),
  FERRY_CLIENTS: z.string().optional(),
  FERRY_CLIENTS_FILE: z.string().optional(),
  FERRY_ANONYMOUS_SCOPES: unsetIfEmpty(
    z
      .string()
      .transform((v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      )
      .optional(),
  ),
  FERRY_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  FERRY_HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(1000).default(300),
});

/** The directory holding nx.json above `from`, or undefined outside a checkout (e.g. in a container). */
export function findWorkspaceRoot(from = process.cwd()): string | undefined {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, 'nx.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function parseClients(env: z.infer<typeof envSchema>): ClientConfig[] | undefined {
  let raw: string | undefined;
  let source: string;
  if (env.FERRY_CLIENTS !== undefined && env.FERRY_CLIENTS.trim() !== '') {
    raw = env.FERRY_CLIENTS;
    source = 'FERRY_CLIENTS';
  } else if (env.FERRY_CLIENTS_FILE) {
    source = 'FERRY_CLIENTS_FILE';
    try {
      raw = readFileSync(env.FERRY_CLIENTS_FILE, 'utf8');
    } catch (err) {
      throw new ConfigError(`${source}: cannot read ${env.FERRY_CLIENTS_FILE}: ${(err as Error).message}`);
    }
  } else {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new ConfigError(`${source}: not valid JSON`);
  }
  const parsed = clientsSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${source}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

const PEM = {
  certificate: /-----BEGIN CERTIFICATE-----/,
  'private key': /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
} as const;

function readPem(variable: string, path: string, what: keyof typeof PEM): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read ${path}: ${(err as Error).message}`);
  }
  if (!PEM[what].test(pem.toString('latin1'))) throw new ConfigError(`${variable}: ${path} holds no PEM ${what}`);
  return pem;
}

/**
 * The TLS files, read and checked together: both the certificate and its key or neither, a client
 * CA only with them, each a readable PEM file, and the key the certificate's (what OpenSSL would
 * refuse when the first client connects is refused at start instead).
 */
function parseTls(e: z.infer<typeof envSchema>): TlsConfig | undefined {
  const certFile = e.FERRY_GRPC_TLS_CERT;
  const keyFile = e.FERRY_GRPC_TLS_KEY;
  if (!certFile && !keyFile) {
    if (e.FERRY_GRPC_TLS_CLIENT_CA) {
      throw new ConfigError('FERRY_GRPC_TLS_CLIENT_CA: mutual TLS needs FERRY_GRPC_TLS_CERT and FERRY_GRPC_TLS_KEY too');
    }
    return undefined;
  }
  if (!certFile || !keyFile) {
    throw new ConfigError(
      `${certFile ? 'FERRY_GRPC_TLS_KEY' : 'FERRY_GRPC_TLS_CERT'}: required with ${certFile ? 'FERRY_GRPC_TLS_CERT' : 'FERRY_GRPC_TLS_KEY'} (set both, or neither for plaintext)`,
    );
  }
  const cert = readPem('FERRY_GRPC_TLS_CERT', certFile, 'certificate');
  const key = readPem('FERRY_GRPC_TLS_KEY', keyFile, 'private key');
  const clientCa = e.FERRY_GRPC_TLS_CLIENT_CA ? readPem('FERRY_GRPC_TLS_CLIENT_CA', e.FERRY_GRPC_TLS_CLIENT_CA, 'certificate') : undefined;
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(`FERRY_GRPC_TLS_CERT / FERRY_GRPC_TLS_KEY: not a usable certificate and key: ${(err as Error).message}`);
  }
  if (clientCa) {
    try {
      createSecureContext({ ca: clientCa });
    } catch (err) {
      throw new ConfigError(`FERRY_GRPC_TLS_CLIENT_CA: not usable CA certificates: ${(err as Error).message}`);
    }
  }
  return { cert, key, ...(clientCa ? { clientCa } : {}) };
}

function formatIssues(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

/** Settings only some apps require (an app that signs URLs needs a signing key). */
export type ConfigNeed = 'signingKey';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * Parses and validates the environment. Throws a ConfigError naming the offending variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, needs: ConfigNeed[] = []): FerryConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid configuration: ${issue.path.join('.')}: ${issue.message}`);
  }
  const e = parsed.data;
  const clients = parseClients(e);
  const devMode = clients === undefined;
  if (devMode && !LOOPBACK.has(e.FERRY_HOST)) {
    throw new ConfigError(
      `FERRY_HOST=${e.FERRY_HOST}: development mode (FERRY_CLIENTS unset) only listens on loopback; set FERRY_CLIENTS or FERRY_CLIENTS_FILE`,
    );
  }
  if (needs.includes('signingKey') && !devMode && !e.FERRY_SIGNING_KEY) {
    throw new ConfigError(
      'FERRY_SIGNING_KEY: required to sign URLs when FERRY_CLIENTS is set (at least 32 characters, the same on every replica)',
    );
  }
  if (e.FERRY_STORAGE === 's3' && !e.FERRY_S3_BUCKET) throw new ConfigError('FERRY_S3_BUCKET: required when FERRY_STORAGE=s3');
  if (Boolean(e.FERRY_S3_ACCESS_KEY_ID) !== Boolean(e.FERRY_S3_SECRET_ACCESS_KEY)) {
    throw new ConfigError('FERRY_S3_ACCESS_KEY_ID and FERRY_S3_SECRET_ACCESS_KEY: set both, or neither (the AWS default credential chain)');
  }
  if (e.FERRY_CACHE_LOW_WATERMARK >= e.FERRY_CACHE_HIGH_WATERMARK) {
    throw new ConfigError(
      `FERRY_CACHE_LOW_WATERMARK (${e.FERRY_CACHE_LOW_WATERMARK}) must be below FERRY_CACHE_HIGH_WATERMARK (${e.FERRY_CACHE_HIGH_WATERMARK})`,
    );
  }
  const tls = parseTls(e);
  const root = findWorkspaceRoot() ?? process.cwd();
  return {
    host: e.FERRY_HOST,
    ports: {
      grpc: e.FERRY_GRPC_PORT,
      grpcMetrics: e.FERRY_GRPC_METRICS_PORT,
      cacheHttp: e.FERRY_CACHE_HTTP_PORT,
      multipart: e.FERRY_MULTIPART_PORT,
      object: e.FERRY_OBJECT_PORT,
      worker: e.FERRY_WORKER_PORT,
    },
    redis: { url: e.REDIS_CLUSTER_NODES ? `redis+cluster://${e.REDIS_CLUSTER_NODES}` : e.REDIS_URL, prefix: e.FERRY_REDIS_PREFIX },
    dataDir: isAbsolute(e.FERRY_DATA_DIR) ? e.FERRY_DATA_DIR : resolve(root, e.FERRY_DATA_DIR),
    storage: e.FERRY_STORAGE,
    ...(e.FERRY_STORAGE === 's3' && e.FERRY_S3_BUCKET
      ? {
          s3: {
            endpoint: e.FERRY_S3_ENDPOINT,
            publicEndpoint: e.FERRY_S3_PUBLIC_ENDPOINT,
            bucket: e.FERRY_S3_BUCKET,
            region: e.FERRY_S3_REGION,
            accessKeyId: e.FERRY_S3_ACCESS_KEY_ID,
            secretAccessKey: e.FERRY_S3_SECRET_ACCESS_KEY,
            forcePathStyle: e.FERRY_S3_FORCE_PATH_STYLE,
            partBytes: e.FERRY_S3_PART_SIZE,
            createBucket: e.FERRY_S3_CREATE_BUCKET,
          },
        }
      : {}),
    uploads: {
      idleLifetimeMs: e.FERRY_UPLOAD_IDLE_TTL_MS,
      leaseTtlMs: e.FERRY_LEASE_TTL_MS,
      fsyncBytes: e.FERRY_FSYNC_BYTES,
      fsyncIntervalMs: e.FERRY_FSYNC_INTERVAL_MS,
      maxNameBytes: e.FERRY_MAX_NAME_BYTES,
    },
    grpc: {
      maxMessageBytes: e.FERRY_GRPC_MAX_MESSAGE_BYTES,
      flowControlWindowBytes: e.FERRY_GRPC_WINDOW_BYTES,
      streamIdleMs: e.FERRY_GRPC_STREAM_IDLE_MS,
      ...(tls ? { tls } : {}),
    },
    worker: { expireIntervalMs: e.FERRY_EXPIRE_INTERVAL_MS, concurrency: e.FERRY_WORKER_CONCURRENCY, jobLockMs: e.FERRY_JOB_LOCK_MS },
    multipart: {
      completeWaitMs: e.FERRY_MULTIPART_COMPLETE_WAIT_MS,
      maxUrlBatch: e.FERRY_MULTIPART_MAX_URL_BATCH,
      inlineCompleteBytes: e.FERRY_MULTIPART_INLINE_COMPLETE_BYTES,
      publicUrl: e.FERRY_PUBLIC_URL_MULTIPART?.replace(/\/$/, ''),
    },
    tus: { maxSize: e.FERRY_TUS_MAX_SIZE, uploadLifetimeMs: e.FERRY_TUS_UPLOAD_TTL_MS },
    objects: {
      publicUrl: e.FERRY_PUBLIC_URL_OBJECT?.replace(/\/$/, ''),
      uploadLifetimeMs: e.FERRY_OBJECT_UPLOAD_TTL_MS,
      blobGraceMs: e.FERRY_BLOB_GRACE_MS,
    },
    gcs: { buckets: e.FERRY_GCS_BUCKETS },
    reapi: {
      instances: e.FERRY_REAPI_INSTANCES,
      maxBatchBytes: e.FERRY_REAPI_MAX_BATCH_BYTES,
      maxBlobBytes: e.FERRY_CAS_MAX_BLOB_BYTES,
      actionCacheTtlMs: e.FERRY_ACTION_CACHE_TTL_MS,
      zeroResume: e.FERRY_REAPI_ZERO_RESUME,
      cache: {
        maxBytes: e.FERRY_CACHE_MAX_BYTES,
        highBytes: Math.floor(e.FERRY_CACHE_MAX_BYTES * e.FERRY_CACHE_HIGH_WATERMARK),
        lowBytes: Math.floor(e.FERRY_CACHE_MAX_BYTES * e.FERRY_CACHE_LOW_WATERMARK),
        minAgeMs: e.FERRY_CACHE_MIN_AGE_MS,
      },
    },
    ...(e.FERRY_CORS_ORIGINS ? { cors: e.FERRY_CORS_ORIGINS } : {}),
    signedUrlTtlMs: e.FERRY_SIGNED_URL_TTL_MS,
    signingKey: e.FERRY_SIGNING_KEY ?? (devMode ? DEV_SIGNING_KEY : undefined),
    auth: { clients: clients ?? [DEV_CLIENT], devMode, ...(e.FERRY_ANONYMOUS_SCOPES ? { anonymousScopes: e.FERRY_ANONYMOUS_SCOPES } : {}) },
    logLevel: e.FERRY_LOG_LEVEL,
    heapGrowingPercent: e.FERRY_HEAP_GROWING_PERCENT,
  };
}

/**
 * For an app's main: the validated configuration, or exit with status 2 and a message naming the
 * bad variable (a configuration mistake is not a crash: no stack trace).
 */
export function loadConfigOrExit(app: string, env: NodeJS.ProcessEnv = process.env, needs: ConfigNeed[] = []): FerryConfig {
  try {
    return loadConfig(env, needs);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`${app}: ${err.message}`);
    process.exit(2);
  }
}
