// Shared jest settings for every project: ts-jest, node environment, UTC clock.
const nxPreset = require('@nx/jest/preset').default;

module.exports = {
  ...nxPreset,
  testEnvironment: 'node',
  passWithNoTests: true,
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.spec.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  setupFiles: [require.resolve('./tools/jest/setup.js')],
  // failing tests are also written to tmp/test-failures.log, which \`npm test\` prints at its end
  reporters: ['default', require.resolve('./tools/jest/failure-log.js')],
  // Tests run on busy machines (\`npm run test:stress\`): they wait for conditions, bounded by
  // WAIT_MS (30 s, @ferry/testing); a test or hook as a whole gets two minutes, not jest's 5 s.
  testTimeout: 120_000,
  // A suite that failed half-way (a timed-out test leaves its requests and jobs running) can keep
  // handles open; without this jest then waits forever instead of reporting the failure.
  forceExit: true,
};
