import { OutOfRangeError } from '@ferry/errors';

/** A byte range `[start, end)` of a resource. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header against a resource of `size` bytes (RFC 9110 section 14). Returns
 * undefined when the whole resource should be sent (no header, another unit, or several ranges,
 * which a server may ignore); throws OutOfRangeError (416) when the single range is unsatisfiable.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first, last] = m;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) throw new OutOfRangeError(`range ${header} is not satisfiable: the resource has ${size} bytes`);
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(first);
  const end = last === '' ? size : Math.min(size, Number(last) + 1);
  if (start >= size || (last !== '' && Number(last) < start)) {
    throw new OutOfRangeError(`range ${header} is not satisfiable: the resource has ${size} bytes`);
  }
  return { start, end };
}
