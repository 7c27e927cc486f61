import type { CatalogObject } from '@ferry/catalog';
import { isGcsBucketName } from '@ferry/config';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnimplementedError } from '@ferry/errors';
import type { GcsObject, ObjectChecksums__Output, WriteObjectSpec__Output } from '@ferry/protocol';

/**
 * The Cloud Storage model over Ferry's catalog: bucket and object names, the write spec an upload
 * carries, checksums as GCS encodes them, generation preconditions, and the `Object` resource.
 *
 * Mapping: object `o` in bucket `b` is the catalog object `b/o`. Published objects are immutable
 * (Ferry's invariant): writing an existing object succeeds only with identical content and answers
 * the existing generation; anything else is ALREADY_EXISTS. Delete the object first to write a new
 * generation. Every object has metageneration 1 (metadata never changes after publication).
 */

const BUCKET_PREFIX = 'projects/_/buckets/';
/** GCS limit on the custom metadata of one object (keys and values, UTF-8). */
const MAX_METADATA_BYTES = 8 * 1024;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface GcsNamesOptions {
  /** Longest object name, in UTF-8 bytes (GCS allows 1024). */
  maxNameBytes: number;
  /** Buckets that exist; undefined: every valid bucket name exists (created by its first write). */
  buckets?: readonly string[];
}

export class GcsNames {
  private readonly buckets?: ReadonlySet<string>;

  constructor(private readonly options: GcsNamesOptions) {
    this.buckets = options.buckets ? new Set(options.buckets) : undefined;
  }

  /** The bucket name of a `projects/_/buckets/<name>` resource; NOT_FOUND for a bucket that does not exist. */
  bucket(resource: string): string {
    if (!resource) throw new InvalidArgumentError('bucket is required, as projects/_/buckets/<name>');
    if (!resource.startsWith(BUCKET_PREFIX)) {
      throw new InvalidArgumentError(`bucket ${JSON.stringify(resource)} must be of the form projects/_/buckets/<name>`);
    }
    const name = resource.slice(BUCKET_PREFIX.length);
    if (!isGcsBucketName(name)) throw new InvalidArgumentError(`${JSON.stringify(name)} is not a valid bucket name`);
    if (this.buckets && !this.buckets.has(name)) throw new NotFoundError(`bucket ${name} does not exist`);
    return name;
  }

  object(name: string): string {
    if (!name) throw new InvalidArgumentError('object name is required');
    if (Buffer.byteLength(name, 'utf8') > this.options.maxNameBytes) {
      throw new InvalidArgumentError(`object name is longer than ${this.options.maxNameBytes} bytes`);
    }
    if (CONTROL.test(name)) throw new InvalidArgumentError('object name contains a control character');
    if (name === '.' || name === '..') throw new InvalidArgumentError('object name may not be "." or ".."');
    return name;
  }
}

/** The catalog name of object `object` in bucket `bucket`. */
export function gcsCatalogName(bucket: string, object: string): string {
  return `${bucket}/${object}`;
}

/** Whole-object checksums as Ferry stores them (lowercase hex; crc32c as 8 digits). */
export interface DeclaredChecksums {
  crc32c?: string;
  md5?: string;
}

export interface Preconditions {
  ifGenerationMatch?: number;
  ifGenerationNotMatch?: number;
  ifMetagenerationMatch?: number;
  ifMetagenerationNotMatch?: number;
}

/** What an upload will publish, fixed when it starts (kept in its session). */
export interface GcsWriteSpec extends Preconditions {
  bucket: string;
  object: string;
  contentType: string;
  metadata: Record<string, string>;
  objectSize?: number;
  checksums: DeclaredChecksums;
}

export function crc32cHexOf(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

/** `ObjectChecksums` of a request; absent fields stay undefined (crc32c 0 is a real checksum). */
export function parseChecksums(c: ObjectChecksums__Output | null | undefined): DeclaredChecksums {
  if (!c) return {};
  const out: DeclaredChecksums = {};
  if (c.crc32c !== undefined && c.crc32c !== null) out.crc32c = crc32cHexOf(c.crc32c);
  if (c.md5_hash && c.md5_hash.length > 0) {
    if (c.md5_hash.length !== 16) throw new InvalidArgumentError(`object_checksums.md5_hash must be 16 bytes, got ${c.md5_hash.length}`);
    out.md5 = c.md5_hash.toString('hex');
  }
  return out;
}

/** Checksums declared at different points of one upload must agree. */
export function mergeChecksums(a: DeclaredChecksums, b: DeclaredChecksums): DeclaredChecksums {
  for (const algo of ['crc32c', 'md5'] as const) {
    if (a[algo] !== undefined && b[algo] !== undefined && a[algo] !== b[algo]) {
      throw new InvalidArgumentError(
        `object_checksums.${algo} ${b[algo]} contradicts the ${algo} ${a[algo]} declared earlier for this upload`,
      );
    }
  }
  return { ...a, ...b };
}

function optionalInt(value: number | undefined | null): number | undefined {
  return value === undefined || value === null ? undefined : Number(value);
}

/** Validates a `WriteObjectSpec` (and checksums sent with it) into the spec an upload keeps. */
export function parseWriteSpec(
  spec: WriteObjectSpec__Output,
  checksums: ObjectChecksums__Output | null | undefined,
  names: GcsNames,
): GcsWriteSpec {
  const resource = spec.resource;
  if (!resource) throw new InvalidArgumentError('write_object_spec.resource is required');
  if (spec.appendable) throw new UnimplementedError('appendable objects are not supported');
  const bucket = names.bucket(resource.bucket);
  const object = names.object(resource.name);
  const objectSize = optionalInt(spec.object_size);
  if (objectSize !== undefined && objectSize < 0) throw new InvalidArgumentError(`object_size ${objectSize} is negative`);
  const metadata = { ...(resource.metadata ?? {}) };
  const metadataBytes = Object.entries(metadata).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (metadataBytes > MAX_METADATA_BYTES) {
    throw new InvalidArgumentError(`custom metadata is ${metadataBytes} bytes; at most ${MAX_METADATA_BYTES} are allowed`);
  }
  if (resource.kms_key || resource.customer_encryption?.encryption_algorithm) {
    throw new UnimplementedError('encryption keys are not supported');
  }
  return {
    bucket,
    object,
    contentType: resource.content_type || 'application/octet-stream',
    metadata,
    ...(objectSize !== undefined ? { objectSize } : {}),
    ifGenerationMatch: optionalInt(spec.if_generation_match),
    ifGenerationNotMatch: optionalInt(spec.if_generation_not_match),
    ifMetagenerationMatch: optionalInt(spec.if_metageneration_match),
    ifMetagenerationNotMatch: optionalInt(spec.if_metageneration_not_match),
    checksums: parseChecksums(checksums),
  };
}

/** The generation an object presents: the one the catalog gave it at publication, else its creation time in µs. */
export function generationOf(object: CatalogObject): number {
  return object.generation ?? Date.parse(object.createdAt) * 1000;
}

/**
 * Checks generation preconditions against the live object (undefined: none), as GCS defines them:
 * if_generation_match 0 means "must not exist"; if_generation_not_match fails when no object lives
 * (0 then means "must exist"); every object has metageneration 1.
 */
export function checkPreconditions(p: Preconditions, live: CatalogObject | undefined): void {
  const generation = live ? generationOf(live) : undefined;
  const fail = (why: string) => {
    throw new FailedPreconditionError(`precondition failed: ${why}`);
  };
  if (p.ifGenerationMatch !== undefined) {
    if (p.ifGenerationMatch === 0 && live) fail(`if_generation_match is 0 but the object exists (generation ${generation})`);
    if (p.ifGenerationMatch !== 0 && generation !== p.ifGenerationMatch) {
      fail(`if_generation_match ${p.ifGenerationMatch}, ${live ? `the live generation is ${generation}` : 'the object does not exist'}`);
    }
  }
  if (p.ifGenerationNotMatch !== undefined) {
    if (!live) fail(`if_generation_not_match ${p.ifGenerationNotMatch} but the object does not exist`);
    if (generation === p.ifGenerationNotMatch) fail(`if_generation_not_match ${p.ifGenerationNotMatch} is the live generation`);
  }
  if (p.ifMetagenerationMatch !== undefined && (!live || p.ifMetagenerationMatch !== 1)) {
    fail(`if_metageneration_match ${p.ifMetagenerationMatch}, ${live ? 'the metageneration is 1' : 'the object does not exist'}`);
  }
  if (p.ifMetagenerationNotMatch !== undefined && (!live || p.ifMetagenerationNotMatch === 1)) {
    fail(`if_metageneration_not_match ${p.ifMetagenerationNotMatch}, ${live ? 'the metageneration is 1' : 'the object does not exist'}`);
  }
}

function timestamp(iso: string): { seconds: number; nanos: number } {
  const ms = Date.parse(iso);
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/**
 * GCS whole-object checksums of a catalog object: those it has (objects the GCS face wrote always
 * carry crc32c; other protocols' objects carry what their protocol needed).
 */
export function objectChecksums(object: CatalogObject): { crc32c?: number; md5_hash?: Buffer } {
  return {
    ...(object.crc32c ? { crc32c: parseInt(object.crc32c, 16) } : {}),
    ...(object.md5 ? { md5_hash: Buffer.from(object.md5, 'hex') } : {}),
  };
}

/** The `google.storage.v2.Object` resource of a catalog object living at `bucket`/`name`. */
export function toGcsObject(object: CatalogObject, bucket: string, name: string): GcsObject {
  const created = timestamp(object.createdAt);
  const generation = generationOf(object);
  return {
    name,
    bucket: `${BUCKET_PREFIX}${bucket}`,
    generation,
    metageneration: 1,
    size: object.size,
    content_type: object.contentType,
    storage_class: 'STANDARD',
    create_time: created,
    update_time: created,
    finalize_time: created,
    checksums: objectChecksums(object),
    metadata: object.metadata ?? {},
    etag: `"${generation.toString(36)}"`,
  };
}
