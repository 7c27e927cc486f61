import { tuneHeap } from './heap';

describe('tuneHeap', () => {
  it('sets the growing factor, or leaves V8 alone at 0', () => {
    const flags: string[] = [];
    tuneHeap(300, (f) => flags.push(f));
    tuneHeap(0, (f) => flags.push(f));
    expect(flags).toEqual(['--heap-growing-percent=300']);
  });

  it('refuses what V8 would misread', () => {
    expect(() => tuneHeap(-1, () => undefined)).toThrow(RangeError);
    expect(() => tuneHeap(1.5, () => undefined)).toThrow(RangeError);
  });
});
