// End-to-end tests of the built `ferry` (dist/apps/cli) against the built stack, run as a user runs them.
export default {
  displayName: 'cli-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  testTimeout: 600_000,
};
