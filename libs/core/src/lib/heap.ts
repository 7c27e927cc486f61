import { setFlagsFromString } from 'node:v8';

/**
 * Sets V8's old-generation growing factor for a process that streams bytes (every Ferry app).
 *
 * Why: V8 starts incremental marking whenever the room left below the old-generation limit is
 * smaller than the young generation's capacity. A Ferry process has ~20 MB of live heap (its
 * modules), its young generation grows to 16 MB while bytes stream through, and V8's dynamic
 * factor leaves ~12 MB of room: so it marked and compacted the whole heap every ~16 MiB of data
 * (145 mark-compacts for 2 GiB uploaded and 2 GiB downloaded by object-api, 15-20 ms each with
 * their incremental steps, found with `--trace-incremental-marking`: "Start (allocation limit)",
 * size 21 MB, limit 33 MB). A fixed factor of 4 (300 %) leaves room for the young generation; the
 * same run does 4 mark-compacts and object-api's CPU per GiB downloaded falls from 1.57 to 0.40
 * seconds. Peak RSS is unchanged: what streams through is ArrayBuffer memory, which V8 still
 * collects under its own external-memory limit; the factor only applies to the small JS heap.
 *
 * Set at runtime (V8 reads the flag each time it sizes the heap) so that every way of starting an
 * app (npm start, nx serve, containers) gets it. `percent` 0 leaves V8's heuristic alone.
 */
export function tuneHeap(percent: number, setFlags: (flags: string) => void = setFlagsFromString): void {
  if (!Number.isInteger(percent) || percent < 0)
    throw new RangeError(`heap growing percent must be a non-negative integer, not ${percent}`);
  if (percent > 0) setFlags(`--heap-growing-percent=${percent}`);
}
