// The upload contract (test/upload-contract.e2e-spec.ts) against the built apps (dist/apps/*), run as processes.
export default {
  displayName: 'upload-contract-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  testTimeout: 180_000,
};
