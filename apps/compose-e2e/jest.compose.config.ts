// The compose stack test (test/compose.e2e-spec.ts): run by `npm run test:compose`
// (tools/compose/test.mjs), which brings docker-compose.yml up first; not part of `npm test`.
export default {
  displayName: 'compose-e2e',
  preset: '../../jest.preset.js',
  rootDir: '.',
  testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
  testTimeout: 300_000,
};
