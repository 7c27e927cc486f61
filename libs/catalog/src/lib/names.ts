import { PermissionDeniedError } from '@ferry/errors';

/**
 * Catalog names under this prefix are multipart file handles (`fileHandle/<id>`): only the
 * multipart assembler publishes them, and only their owners reach them, through the multipart API.
 */
export const FILE_HANDLE_PREFIX = 'fileHandle/';

/** The catalog name of a CAS blob (REAPI, Bazel's HTTP cache): the name Bazel reads it by with an empty instance. */
export function casObjectName(sha256: string, size: number): string {
  return `blobs/${sha256}/${size}`;
}

/** The catalog name of a file handle's object (documented in the README's name mapping). */
export function fileHandleObjectName(id: string): string {
  return `${FILE_HANDLE_PREFIX}${id}`;
}

/**
 * Refuses a name that no client may create through ByteStream or the object API (GCS cannot name
 * it: bucket names are lowercase). A multipart client holds `ferry:write:fileHandle/*` (it uploads
 * file handles); without this it could write `fileHandle/<next id>` over ByteStream first, and the
 * assembly of someone else's upload would then fail to publish its handle.
 */
export function assertClientWritable(name: string): void {
  if (name.startsWith(FILE_HANDLE_PREFIX)) {
    throw new PermissionDeniedError(`names under ${FILE_HANDLE_PREFIX} are multipart file handles: only the multipart API creates them`);
  }
}
