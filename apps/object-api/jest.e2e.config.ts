// End-to-end tests against the built apps (dist/apps/*), run as separate processes.
export default {
  displayName: 'object-api-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  testTimeout: 120_000,
};
