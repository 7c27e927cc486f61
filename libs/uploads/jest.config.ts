export default {
  displayName: 'uploads',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/uploads',
};
