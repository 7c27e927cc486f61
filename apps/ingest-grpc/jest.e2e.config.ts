// End-to-end tests against the built server (dist/apps/ingest-grpc), started as separate processes.
export default {
  displayName: 'ingest-grpc-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  testTimeout: 600_000,
};
