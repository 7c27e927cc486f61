export default {
  displayName: 'catalog',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/catalog',
};
