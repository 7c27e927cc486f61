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
  // A suite that failed half-way (a timed-out test leaves its requests and jobs running) can keep
  // handles open; without this jest then waits forever instead of reporting the failure.
  forceExit: true,
};
