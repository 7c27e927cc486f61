import type { Endpoints } from './args';
import { catalogSha256 } from './catalog';
import { VerificationError } from './errors';
import type { Progress } from './progress';
import { sha256File } from './transfer';

/**
 * Compares the local file's sha256 with the one the catalog records for `name` (object API
 * metadata): a mismatch is a VerificationError; a catalog that cannot be asked is a note.
 */
export async function verifyAgainstCatalog(
  endpoints: Endpoints,
  name: string,
  path: string,
  progress: Progress,
  signal: AbortSignal,
  direction: 'upload' | 'download' = 'upload',
): Promise<string> {
  const local = await sha256File(path, signal);
  let recorded: string | undefined;
  try {
    recorded = await catalogSha256(endpoints, name);
  } catch (err) {
    progress.note(`sha256 not checked against the catalog: ${(err as Error).message}`);
    return local;
  }
  if (recorded === undefined) {
    progress.note(`sha256 not checked: the catalog records none for ${name}`);
    return local;
  }
  if (recorded !== local) {
    throw new VerificationError(
      direction === 'upload'
        ? `sha256 mismatch: ${path} is ${local}, the catalog has ${recorded} for ${name}`
        : `sha256 mismatch: ${path} is ${local}, the catalog has ${recorded} for ${name}; remove ${path} and download again`,
    );
  }
  progress.note(`sha256 ${local} verified`);
  return local;
}
