import { answersZero, parseVersion, resumesFromPartialSize } from './client-tool';

describe('parseVersion', () => {
  it.each([
    ['2.1.0', [2, 1, 0]],
    ['release 2.1.0', [2, 1, 0]],
    ['2.2.0rc1', [2, 2, 0]],
    ['7.0.0-pre.20231011.2', [7, 0, 0]],
    ['v3.7', [3, 7, 0]],
    ['4', [4, 0, 0]],
  ])('reads %s', (label, version) => {
    expect(parseVersion(label)).toEqual(version);
  });

  it.each(['', 'development version', 'head'])('finds no release in %j', (label) => {
    expect(parseVersion(label)).toBeUndefined();
  });
});

describe('resumesFromPartialSize', () => {
  it.each(['2.1.0', '2.1.1', 'release 2.1.0', '2.1.0rc2', '2.0.0', '1.2.1', '0.29.1'])('is false for Bazel %s', (version) => {
    expect(resumesFromPartialSize({ tool: 'bazel', version })).toBe(false);
  });

  it.each(['2.2.0', '2.2.0rc1', 'release 3.7.2', '4.2.2', '7.4.1', '8.0.0-pre.20240303.1', '', 'development version'])(
    'is true for Bazel %j',
    (version) => {
      expect(resumesFromPartialSize({ tool: 'bazel', version })).toBe(true);
    },
  );

  it('is true for other tools, unnamed tools, Bazel without a version and no metadata at all', () => {
    expect(resumesFromPartialSize({ tool: 'reclient', version: '0.1.0' })).toBe(true);
    expect(resumesFromPartialSize({ version: '2.1.0' })).toBe(true);
    expect(resumesFromPartialSize({ tool: 'bazel' })).toBe(true);
    expect(resumesFromPartialSize(undefined)).toBe(true);
  });

  it('takes the tool name in any case, with surrounding spaces', () => {
    expect(resumesFromPartialSize({ tool: ' Bazel ', version: '2.1.0' })).toBe(false);
  });
});

describe('answersZero', () => {
  const old = { tool: 'bazel', version: '2.1.0' };
  const current = { tool: 'bazel', version: '7.4.1' };

  it('auto: old Bazel only; always: everyone; never: no one', () => {
    expect([answersZero('auto', old), answersZero('auto', current), answersZero('auto', undefined)]).toEqual([true, false, false]);
    expect([answersZero('always', old), answersZero('always', current), answersZero('always', undefined)]).toEqual([true, true, true]);
    expect([answersZero('never', old), answersZero('never', current), answersZero('never', undefined)]).toEqual([false, false, false]);
  });
});
