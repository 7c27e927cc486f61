export default {
  displayName: 'workspace-checks',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testTimeout: 120_000,
};
