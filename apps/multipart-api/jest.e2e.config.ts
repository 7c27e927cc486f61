// End-to-end tests against the built worker (dist/apps/multipart-api), run as a separate process.
export default {
  displayName: 'multipart-api-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  testTimeout: 120_000,
};
