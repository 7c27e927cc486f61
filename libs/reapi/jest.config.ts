export default {
  displayName: 'reapi',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/reapi',
};
