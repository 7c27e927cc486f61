/**
 * The tool behind a call, as it names itself; independent of the transport (gRPC carries it in
 * REAPI's `RequestMetadata.tool_details`). Either field may be missing: nothing is known then.
 */
export interface ClientTool {
  tool?: string;
  version?: string;
}

/**
 * What `QueryWriteStatus` answers for an unfinished REAPI upload (`FERRY_REAPI_ZERO_RESUME`):
 * - `never`: the committed size, for every client;
 * - `always`: 0, for every client (it re-sends from 0; Ferry skips the bytes it holds);
 * - `auto`: 0 for Bazel releases that fail on a partial size (see `resumesFromPartialSize`), the
 *   committed size for everyone else.
 */
export type ZeroResume = 'auto' | 'always' | 'never';

/**
 * The first Bazel release whose ByteStream uploads resume from a partial committed size.
 *
 * After a failed `Write` Bazel asks `QueryWriteStatus` (since May 2019: 3c9089b, "Progressively
 * retrying uploads to bytestream") and seeks its Chunker to the answer. From 1.2.0 (01d7f97, "Fix
 * NPE in Chunker#seek()") to 2.1.x, `Chunker.seek` to an offset below where it had read calls
 * `reset()`, which drops its input stream, then skips on that null stream: a NullPointerException,
 * and the upload fails ("WARNING: Writing to Remote Cache: java.lang.NullPointerException"). Seeking
 * to 0 skips nothing, so 0 works. The fix (9a823d9, "Prevent NPE on backwards seek on Chunker", PR
 * #10566, 2020-01-14) is not in 2.1.0 (baseline 41ec5a2, 2020-01-08, no cherry-pick) and is in 2.2.0
 * (baseline 78055ef). These releases send `tool_details` on `QueryWriteStatus` as on `Write` (both
 * take it from the call's gRPC context). 0 is safe for any Bazel (older ones resume from 0 too), so
 * every Bazel below 2.2.0 gets it.
 */
export const BAZEL_RESUMES_FROM: readonly [number, number, number] = [2, 2, 0];

/**
 * The release in a version label: the first `major[.minor[.patch]]` in it ("2.1.0", "release 2.1.0",
 * "2.2.0rc1", "7.0.0-pre.20231011.2"). Undefined when it has none (a development build sends "").
 */
export function parseVersion(label: string): [number, number, number] | undefined {
  const m = /(?:^|[^\d.])(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?/.exec(label);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

function below(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

/**
 * False only for a client known to fail when told a partial committed size: Bazel older than
 * `BAZEL_RESUMES_FROM`. Other tools, unnamed tools and versions without a number (development
 * builds) count as current.
 */
export function resumesFromPartialSize(client: ClientTool | undefined): boolean {
  if (client?.tool?.trim().toLowerCase() !== 'bazel' || client.version === undefined) return true;
  const version = parseVersion(client.version);
  return version === undefined || !below(version, BAZEL_RESUMES_FROM);
}

/** Whether `QueryWriteStatus` answers 0 for this client's unfinished REAPI upload. */
export function answersZero(mode: ZeroResume, client: ClientTool | undefined): boolean {
  if (mode === 'always') return true;
  if (mode === 'never') return false;
  return !resumesFromPartialSize(client);
}
