import { z } from 'zod';
import { InvalidArgumentError } from '@ferry/errors';

/** Largest `dataInline` payload, decoded (docs/protocols.md, Taskcluster object service). */
export const DATA_INLINE_MAX_BYTES = 8192;

/** The hashes the object service knows; others are accepted and ignored. */
export type Hashes = { sha256?: string; sha512?: string };

export interface CreateUploadRequest {
  projectId: string;
  uploadId: string;
  expires: string;
  hashes?: Hashes;
  proposedUploadMethods: {
    dataInline?: { contentType: string; objectData: string };
    putUrl?: { contentType: string; contentLength: number };
  };
}

export type UploadMethod =
  { dataInline: true } | { putUrl: { url: string; expires: string; headers: Record<string, string> } } | Record<string, never>;

export interface CreateUploadResponse {
  projectId: string;
  uploadId: string;
  expires: string;
  uploadMethod: UploadMethod;
}

export interface FinishUploadRequest {
  projectId: string;
  uploadId: string;
  hashes?: Hashes;
}

export type DownloadResponse = { method: 'getUrl'; url: string; expires: string; hashes: Hashes } | { method: 'simple'; url: string };

export interface ObjectMetadata {
  projectId: string;
  expires: string;
  hashes: Hashes;
}

/**
 * The Taskcluster object service's codes; the HTTP app maps these errors by class. A body that
 * violates the schema is a plain InvalidArgumentError (Taskcluster's InputValidationError).
 */
export class NoMatchingMethodError extends InvalidArgumentError {}
/** A path parameter (the object name) violates its pattern: Taskcluster's InvalidRequestArguments (400). */
export class InvalidRequestArgumentsError extends InvalidArgumentError {}
/** A valid body that does not agree with the server's state (another projectId, other hashes than the data's): Taskcluster's InputError (400). */
export class InputError extends InvalidArgumentError {}

/** Content types end up in a response header: printable ASCII only. */
const contentType = z
  .string()
  .max(255)
  .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII');

const projectId = z.string().regex(/^[a-zA-Z0-9._/-]{1,500}$/, 'must match ^[a-zA-Z0-9._/-]{1,500}$');
/** A slugid: 22 URL-safe base64 characters encoding a v4 UUID. */
const uploadId = z
  .string()
  .regex(
    /^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$/,
    'must be a slugid (a v4 UUID, 22 URL-safe base64 characters)',
  );
const hashes = z
  .record(z.string())
  .superRefine((h, ctx) => {
    if (h['sha256'] !== undefined && !/^[0-9a-f]{64}$/.test(h['sha256']))
      ctx.addIssue({ code: 'custom', message: 'sha256 must be 64 lowercase hex digits' });
    if (h['sha512'] !== undefined && !/^[0-9a-f]{128}$/.test(h['sha512']))
      ctx.addIssue({ code: 'custom', message: 'sha512 must be 128 lowercase hex digits' });
  })
  .transform((h): Hashes => ({ ...(h['sha256'] ? { sha256: h['sha256'] } : {}), ...(h['sha512'] ? { sha512: h['sha512'] } : {}) }));

const createSchema = z
  .object({
    projectId,
    uploadId,
    expires: z.string().datetime({ offset: true, message: 'must be an ISO 8601 date-time' }),
    hashes: hashes.optional(),
    proposedUploadMethods: z
      .object({
        dataInline: z
          .object({
            contentType,
            objectData: z
              .string()
              .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64')
              .refine(
                (data) => base64DecodedLength(data) <= DATA_INLINE_MAX_BYTES,
                (data) => ({
                  message: `decodes to ${base64DecodedLength(data)} bytes; at most ${DATA_INLINE_MAX_BYTES} (8 KiB) can be sent inline (propose putUrl for more)`,
                }),
              ),
          })
          .strict()
          .optional(),
        putUrl: z
          .object({ contentType, contentLength: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) })
          .strict()
          .optional(),
      })
      .strict(),
  })
  .strict();

const finishSchema = z.object({ projectId, uploadId, hashes: hashes.optional() }).strict();

const downloadSchema = z
  .object({ acceptDownloadMethods: z.object({ simple: z.literal(true).optional(), getUrl: z.literal(true).optional() }).passthrough() })
  .strict();

function parse<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new InvalidArgumentError(`${what}: ${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}`);
}

export const parseCreateUpload = (body: unknown): CreateUploadRequest => parse(createSchema, body, 'invalid createUpload request');
export const parseFinishUpload = (body: unknown): FinishUploadRequest => parse(finishSchema, body, 'invalid finishUpload request');
export const parseStartDownload = (body: unknown): { acceptDownloadMethods: { simple?: true; getUrl?: true } } =>
  parse(downloadSchema, body, 'invalid startDownload request');

/** Object names: printable ASCII (0x20-0x7e), 1 to 1024 characters. InvalidRequestArgumentsError otherwise. */
export function assertObjectName(name: string): void {
  if (!/^[\x20-\x7e]{1,1024}$/.test(name)) {
    throw new InvalidRequestArgumentsError(
      `URL parameter 'name' given as ${JSON.stringify(name)} must be 1 to 1024 printable ASCII characters (0x20-0x7e)`,
    );
  }
}

/** The number of bytes a base64 string (padded or not) decodes to. */
function base64DecodedLength(data: string): number {
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  return Math.floor((data.length * 3) / 4) - padding;
}

/** Merges newly declared hashes into known ones; a different value for a known algorithm is a conflict. */
export function mergeHashes(known: Hashes, declared: Hashes | undefined): { merged: Hashes; conflict?: string } {
  const merged: Hashes = { ...known };
  for (const algo of ['sha256', 'sha512'] as const) {
    const v = declared?.[algo];
    if (v === undefined) continue;
    if (merged[algo] !== undefined && merged[algo] !== v) return { merged, conflict: algo };
    merged[algo] = v;
  }
  return { merged };
}
