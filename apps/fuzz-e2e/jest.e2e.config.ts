// The fuzz suite (test/fuzz.e2e-spec.ts) against the built apps (dist/apps/*), run as processes.
export default {
  displayName: 'fuzz-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  // the full run (npm run fuzz) takes minutes; the short one (the e2e target) two or so
  testTimeout: 3_600_000,
};
