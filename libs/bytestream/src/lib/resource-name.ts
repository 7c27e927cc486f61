import { ConfigError } from '@ferry/config';
import { InvalidArgumentError } from '@ferry/errors';

/**
 * ByteStream resource names.
 *
 * Remote Execution API (Bazel remote caches), recognised first:
 *   upload:   [{instance}/]uploads/{uuid}/blobs/{hash}/{size}[/{anything}]
 *             [{instance}/]uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}[/{anything}]
 *   download: [{instance}/]blobs/{hash}/{size}
 *             [{instance}/]compressed-blobs/zstd/{hash}/{size}
 * A leading "/" is tolerated. The digest function follows from the hash length; Ferry stores
 * SHA-256 (64 hex digits); hash and size are always those of the uncompressed blob. Every other
 * name is a generic name: the catalog object's name.
 */
export type ResourceName =
  | { kind: 'cas-upload'; name: string; instance: string; uuid: string; sha256: string; size: number; compressor?: Compressor }
  | { kind: 'cas-download'; name: string; instance: string; sha256: string; size: number; compressor?: Compressor }
  | { kind: 'generic'; name: string };

/** The compressors of `compressed-blobs/{compressor}/` names Ferry speaks (when zstd is available: see @ferry/compression). */
export type Compressor = 'zstd';

const RESERVED_SEGMENTS = new Set(['blobs', 'uploads', 'compressed-blobs', 'actions', 'actionResults', 'operations', 'capabilities']);
const HEX = /^[0-9a-fA-F]+$/;
const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;
// C0 controls and DEL. NUL is the dangerous one, but no control character belongs in a name.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export { casObjectName } from '@ferry/catalog';

export function parseResourceName(raw: string, maxBytes: number): ResourceName {
  if (!raw) throw new InvalidArgumentError('resource_name is required');
  if (Buffer.byteLength(raw, 'utf8') > maxBytes) {
    throw new InvalidArgumentError(`resource_name is longer than ${maxBytes} bytes`);
  }
  if (CONTROL.test(raw)) throw new InvalidArgumentError('resource_name contains a control character');
  const segments = (raw.startsWith('/') ? raw.slice(1) : raw).split('/');
  if (segments.some((s) => s === '..' || s === '.')) {
    throw new InvalidArgumentError('resource_name may not contain "." or ".." segments');
  }
  const reapi = parseReapi(segments);
  if (reapi) return reapi;
  if (segments.includes('compressed-blobs')) {
    throw new InvalidArgumentError('a compressed-blobs name is [{instance}/][uploads/{uuid}/]compressed-blobs/zstd/{hash}/{size}');
  }
  if (raw.startsWith('/') || segments.some((s) => s === '')) {
    throw new InvalidArgumentError('resource_name may not start with "/" or contain empty segments');
  }
  return { kind: 'generic', name: raw };
}

function parseReapi(segments: string[]): ResourceName | undefined {
  const plain = segments.indexOf('blobs');
  const compressed = segments.indexOf('compressed-blobs');
  const isCompressed = compressed >= 0 && (plain < 0 || compressed < plain);
  // `blobs` is the segment before the hash: `compressed-blobs/{compressor}` stands in its place
  const blobs = isCompressed ? compressed + 1 : plain;
  if (blobs < 0 || blobs + 2 >= segments.length) return undefined;
  const compressor = isCompressed ? compressorOf(segments[blobs]) : undefined;
  const hash = segments[blobs + 1];
  const sizeText = segments[blobs + 2];
  if (!HEX.test(hash) || !DECIMAL.test(sizeText)) return undefined;
  const first = isCompressed ? compressed : blobs; // the first segment after the uuid or instance
  const isUpload = first >= 2 && segments[first - 2] === 'uploads';
  const instanceSegments = segments.slice(0, isUpload ? first - 2 : first);
  // A download name ends at {size}; anything after it means this is not a REAPI name.
  if (!isUpload && blobs + 3 !== segments.length) return undefined;
  if (instanceSegments.some((s) => RESERVED_SEGMENTS.has(s) || s === '')) return undefined;
  if (hash.length !== 64) {
    throw new InvalidArgumentError(`unsupported digest function: hash of ${hash.length} hex digits (Ferry stores SHA-256)`);
  }
  const size = Number(sizeText);
  const instance = instanceSegments.join('/');
  const sha256 = hash.toLowerCase();
  const name = segments.join('/');
  const compression = compressor ? { compressor } : {};
  if (isUpload) {
    const uuid = segments[first - 1];
    if (!uuid) throw new InvalidArgumentError('upload resource name has an empty uuid');
    return { kind: 'cas-upload', name, instance, uuid, sha256, size, ...compression };
  }
  return { kind: 'cas-download', name, instance, sha256, size, ...compression };
}

function compressorOf(segment: string): Compressor {
  if (segment !== 'zstd') throw new InvalidArgumentError(`compressor ${JSON.stringify(segment)} is not supported; Ferry speaks zstd`);
  return segment;
}

/**
 * REAPI instance names: `/`-separated segments, none empty or reserved (`blobs`, `uploads`...),
 * no control characters; the empty name is the default instance. With a configured list, only
 * those are served (INVALID_ARGUMENT for others, as remote caches answer).
 */
export class ReapiInstances {
  private readonly served?: ReadonlySet<string>;

  constructor(served?: readonly string[]) {
    for (const name of served ?? []) {
      const problem = instanceProblem(name);
      if (problem) throw new ConfigError(`FERRY_REAPI_INSTANCES: ${JSON.stringify(name)} ${problem}`);
    }
    this.served = served ? new Set(served) : undefined;
  }

  /** The instance name, checked; INVALID_ARGUMENT when malformed or not served. */
  check(name: string): string {
    const problem = instanceProblem(name);
    if (problem) throw new InvalidArgumentError(`instance name ${JSON.stringify(name)} ${problem}`);
    if (this.served && !this.served.has(name)) throw new InvalidArgumentError(`unknown instance name ${JSON.stringify(name)}`);
    return name;
  }
}

function instanceProblem(name: string): string | undefined {
  if (name === '') return undefined;
  if (CONTROL.test(name)) return 'contains a control character';
  const segments = name.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return 'has an empty, "." or ".." segment';
  const reserved = segments.find((s) => RESERVED_SEGMENTS.has(s));
  if (reserved) return `uses the reserved segment "${reserved}"`;
  return undefined;
}
