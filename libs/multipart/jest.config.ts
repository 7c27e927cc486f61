export default {
  displayName: 'multipart',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/multipart',
};
