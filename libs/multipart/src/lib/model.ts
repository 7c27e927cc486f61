import { createHash } from 'node:crypto';
import { z } from 'zod';
import { InvalidArgumentError } from '@ferry/errors';

/**
 * Parts of an upload that is completing, completed or failed no longer change: Synapse refuses to
 * add parts to a completed upload with a 400, not an ADD_FAILED (MultipartManagerV2Impl), and so
 * does Ferry, in every state past UPLOADING.
 */
export class PartsFrozenError extends InvalidArgumentError {
  constructor(uploadId: string, state: MultipartState) {
    super(
      state === 'COMPLETED'
        ? `Cannot add parts to completed file upload ${uploadId}.`
        : state === 'FAILED'
          ? `Cannot add parts to failed file upload ${uploadId}: start the upload again.`
          : `Cannot add parts to file upload ${uploadId}: it is ${state} (complete was called); call complete for its result.`,
    );
  }
}

/** The limits of Synapse multipart uploads (docs/protocols.md) (S3's multipart limits, which Synapse inherits). */
export const LIMITS = {
  minPartBytes: 5 * 1024 * 1024,
  maxPartBytes: 5 * 1024 * 1024 * 1024,
  maxParts: 10_000,
  maxNameChars: 256,
} as const;

/** States of an upload. UPLOADING and COMPLETED are Synapse's; ASSEMBLING and FAILED are Ferry's. */
export type MultipartState = 'UPLOADING' | 'ASSEMBLING' | 'COMPLETED' | 'FAILED';

/** `POST /file/multipart` body. */
export interface MultipartUploadRequest {
  concreteType?: string;
  fileName: string;
  contentType: string;
  contentMD5Hex: string;
  fileSizeBytes: number;
  partSizeBytes: number;
  storageLocationId?: number;
  generatePreview?: boolean;
}

export interface MultipartUploadStatus {
  uploadId: string;
  startedBy: string;
  startedOn: string;
  updatedOn: string;
  partsState: string;
  state: MultipartState;
  resultFileHandleId?: string;
  /** Why the upload failed (state FAILED only). */
  errorMessage?: string;
}

export interface PartPresignedUrl {
  partNumber: number;
  uploadPresignedUrl: string;
  signedHeaders: Record<string, string>;
}

export interface AddPartResponse {
  uploadId: string;
  partNumber: number;
  addPartState: 'ADD_SUCCESS' | 'ADD_FAILED';
  errorMessage?: string;
}

export interface FileHandle {
  id: string;
  etag: string;
  concreteType: string;
  fileName: string;
  contentType: string;
  contentMd5: string;
  contentSize: number;
  createdBy: string;
  createdOn: string;
  modifiedOn: string;
  storageLocationId?: number;
  status: 'AVAILABLE';
  /** Ferry extension: the catalog object holding the bytes (readable through the object API). */
  objectName: string;
  /** Ferry extension: sha256 of the content. */
  contentSha256: string;
}

export const FILE_HANDLE_CONCRETE_TYPE = 'org.sagebionetworks.repo.model.file.S3FileHandle';
export const MULTIPART_REQUEST_CONCRETE_TYPE = 'org.sagebionetworks.repo.model.file.MultipartUploadRequest';

const printable = (max: number) =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(max, `at most ${max} characters`)
    // eslint-disable-next-line no-control-regex
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters');

const safeInt = z.number({ invalid_type_error: 'must be a number' }).int('must be an integer').max(Number.MAX_SAFE_INTEGER);

const requestSchema = z
  .object({
    concreteType: z.literal(MULTIPART_REQUEST_CONCRETE_TYPE).optional(),
    fileName: printable(LIMITS.maxNameChars).refine((s) => !s.includes('/'), 'must not contain "/"'),
    contentType: printable(255)
      .refine((s) => /^[\x20-\x7e]*$/.test(s), 'must be printable ASCII')
      .default('application/octet-stream'),
    contentMD5Hex: z.string().regex(/^[0-9a-fA-F]{32}$/, 'must be 32 hexadecimal digits'),
    fileSizeBytes: safeInt.min(1, 'must be at least 1'),
    partSizeBytes: safeInt.min(1, 'must be at least 1'),
    storageLocationId: safeInt.min(0).optional(),
    generatePreview: z.boolean().optional(),
  })
  .strict();

const batchSchema = z
  .object({
    uploadId: z.string().optional(),
    partNumbers: z.array(safeInt.min(1, 'part numbers start at 1'), { required_error: 'is required' }).min(1, 'ask for at least one part'),
    contentType: printable(255)
      .refine((s) => /^[\x20-\x7e]*$/.test(s), 'must be printable ASCII')
      .optional(),
  })
  .strict();

function invalid(what: string, error: z.ZodError): InvalidArgumentError {
  const issue = error.issues[0];
  const field = issue.path.join('.');
  return new InvalidArgumentError(`${what}: ${field ? `${field}: ` : ''}${issue.message}`);
}

/** Validates and normalises a start request (400 with the first reason). */
export function parseUploadRequest(body: unknown): MultipartUploadRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidArgumentError('body must be a JSON object (Content-Type: application/json)');
  }
  const r = requestSchema.safeParse(body);
  if (!r.success) throw invalid('invalid MultipartUploadRequest', r.error);
  const req: MultipartUploadRequest = { ...r.data, contentMD5Hex: r.data.contentMD5Hex.toLowerCase() };
  const single = req.fileSizeBytes <= req.partSizeBytes;
  if (req.partSizeBytes > LIMITS.maxPartBytes) {
    throw new InvalidArgumentError(`invalid MultipartUploadRequest: partSizeBytes: at most ${LIMITS.maxPartBytes} (5 GiB)`);
  }
  if (!single && req.partSizeBytes < LIMITS.minPartBytes) {
    throw new InvalidArgumentError(
      `invalid MultipartUploadRequest: partSizeBytes: at least ${LIMITS.minPartBytes} (5 MiB) unless the whole file fits in one part`,
    );
  }
  const parts = partCount(req.fileSizeBytes, req.partSizeBytes);
  if (parts > LIMITS.maxParts) {
    throw new InvalidArgumentError(
      `invalid MultipartUploadRequest: ${req.fileSizeBytes} bytes in parts of ${req.partSizeBytes} makes ${parts} parts, more than ${LIMITS.maxParts}; use parts of at least ${Math.ceil(req.fileSizeBytes / LIMITS.maxParts)} bytes`,
    );
  }
  return req;
}

export function parseUrlBatch(
  body: unknown,
  uploadId: string,
  partCountOfUpload: number,
  maxBatch: number,
): { partNumbers: number[]; contentType?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidArgumentError('body must be a JSON object (Content-Type: application/json)');
  }
  const r = batchSchema.safeParse(body);
  if (!r.success) throw invalid('invalid BatchPresignedUploadUrlRequest', r.error);
  if (r.data.uploadId !== undefined && r.data.uploadId !== uploadId) {
    throw new InvalidArgumentError(
      `invalid BatchPresignedUploadUrlRequest: uploadId ${r.data.uploadId} does not match the URL's ${uploadId}`,
    );
  }
  const partNumbers = [...new Set(r.data.partNumbers)];
  if (partNumbers.length > maxBatch) {
    throw new InvalidArgumentError(`invalid BatchPresignedUploadUrlRequest: at most ${maxBatch} part numbers per batch`);
  }
  const bad = partNumbers.find((n) => n > partCountOfUpload);
  if (bad !== undefined) {
    throw new InvalidArgumentError(
      `invalid BatchPresignedUploadUrlRequest: part ${bad} does not exist: this upload has ${partCountOfUpload} parts`,
    );
  }
  return { partNumbers, contentType: r.data.contentType };
}

/** Parses a part number from a path (400 unless 1..parts). */
export function parsePartNumber(raw: string, parts: number): number {
  const n = /^[1-9]\d{0,5}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n > parts) {
    throw new InvalidArgumentError(`part number ${JSON.stringify(raw)} is out of range: this upload has parts 1 to ${parts}`);
  }
  return n;
}

export function parseMd5Hex(raw: unknown, what: string): string {
  if (typeof raw !== 'string' || !/^[0-9a-fA-F]{32}$/.test(raw)) throw new InvalidArgumentError(`${what} must be 32 hexadecimal digits`);
  return raw.toLowerCase();
}

export function parseBooleanFlag(raw: unknown, name: string, fallback: boolean): boolean {
  if (raw === undefined) return fallback;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw new InvalidArgumentError(`${name} must be true or false`);
}

export function partCount(fileSize: number, partSize: number): number {
  return Math.max(1, Math.ceil(fileSize / partSize));
}

/** Byte range `[start, end)` of part `n` (1-based). */
export function partRange(n: number, fileSize: number, partSize: number): { start: number; end: number } {
  const start = (n - 1) * partSize;
  return { start, end: Math.min(n * partSize, fileSize) };
}

/** The key of idempotent start: the same user sending the same request gets the same upload. */
export function requestDigest(req: MultipartUploadRequest): string {
  const canonical = [
    req.fileName,
    req.contentType,
    req.contentMD5Hex,
    req.fileSizeBytes,
    req.partSizeBytes,
    req.storageLocationId ?? '',
    req.generatePreview ?? '',
  ];
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex').slice(0, 32);
}
