import { OutOfRangeError } from '@ferry/errors';
import { parseRange } from './range';

describe('parseRange', () => {
  it('reads first-last, open-ended and suffix ranges, clamped to the size', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 10 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 100 });
    expect(parseRange('bytes=95-200', 100)).toEqual({ start: 95, end: 100 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 100 });
    expect(parseRange('bytes=-1000', 100)).toEqual({ start: 0, end: 100 });
  });

  it('sends the whole resource for no range, other units and multiple ranges', () => {
    expect(parseRange(undefined, 100)).toBeUndefined();
    expect(parseRange('items=0-1', 100)).toBeUndefined();
    expect(parseRange('bytes=0-1,5-6', 100)).toBeUndefined();
  });

  it('refuses unsatisfiable ranges with 416', () => {
    expect(() => parseRange('bytes=100-', 100)).toThrow(OutOfRangeError);
    expect(() => parseRange('bytes=5-4', 100)).toThrow(/not satisfiable/);
    expect(() => parseRange('bytes=-0', 100)).toThrow(OutOfRangeError);
    expect(() => parseRange('bytes=0-', 0)).toThrow(OutOfRangeError);
  });
});
