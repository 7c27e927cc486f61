// The load run (test/load.e2e-spec.ts) against the built apps (dist/apps/*), run as processes.
export default {
  displayName: 'load-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  // the full run (npm run load) takes minutes; the short one (the e2e target) about one
  testTimeout: 3_600_000,
};
