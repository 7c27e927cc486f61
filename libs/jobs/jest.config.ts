export default {
  displayName: 'jobs',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/jobs',
};
