export default {
  displayName: 'gcs',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/gcs',
};
