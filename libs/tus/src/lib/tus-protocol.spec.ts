import { InvalidArgumentError } from '@ferry/errors';
import { PartialUploadGoneError, parseConcat, tusHttpStatus } from './tus-protocol';

describe('parseConcat (Upload-Concat, concatenation extension)', () => {
  const a = 'A'.repeat(22);
  const b = 'b_-0123456789abcdefghi';

  it('reads partial, and final with absolute URLs or paths, keeping them as given and in order', () => {
    expect(parseConcat(undefined)).toBeUndefined();
    expect(parseConcat('partial')).toEqual({ kind: 'partial' });
    expect(parseConcat(`final;https://ferry.example/prefix/files/${a} /files/${b}  /files/${a}`)).toEqual({
      kind: 'final',
      urls: [`https://ferry.example/prefix/files/${a}`, `/files/${b}`, `/files/${a}`],
      ids: [a, b, a],
    });
  });

  it.each([
    ['partial;x', /must be "partial" or "final;/],
    ['final', /must be "partial" or "final;/],
    ['final;', /names no partial upload/],
    ['final;   ', /names no partial upload/],
    [`final;/uploads/${a}`, /names no upload/],
    [`final;/files/${a}/x`, /names no upload/],
    ['final;/files/short', /names no upload/],
    [`final;http://[bad/files/${a}`, /is not a URL/],
  ])('refuses %j (400)', (header, message) => {
    expect(() => parseConcat(header)).toThrow(InvalidArgumentError);
    expect(() => parseConcat(header)).toThrow(message);
  });

  it('answers 410 for a final upload whose partial upload is gone', () => {
    expect(tusHttpStatus(new PartialUploadGoneError('gone'))).toBe(410);
  });
});
