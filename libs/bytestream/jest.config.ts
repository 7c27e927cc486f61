export default {
  displayName: 'bytestream',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/bytestream',
};
