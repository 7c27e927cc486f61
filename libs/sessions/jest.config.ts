export default {
  displayName: 'sessions',
  preset: '../../jest.preset.js',
  rootDir: '.',
  coverageDirectory: '../../coverage/libs/sessions',
};
