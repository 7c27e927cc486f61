// The webpack configuration every Ferry app shares: a Node bundle of the app and its libs into
// dist/apps/<app>/main.js, with node_modules left external.
const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');
const { join } = require('node:path');

/** @param {string} appDir the app's directory; @param {{input: string, glob: string, output: string}[]} assets */
module.exports = function appWebpackConfig(appDir, assets = []) {
  const name = require('node:path').basename(appDir);
  return {
    output: { path: join(appDir, '../../dist/apps', name), clean: true },
    devtool: 'source-map',
    plugins: [
      new NxAppWebpackPlugin({
        target: 'node',
        compiler: 'tsc',
        main: './src/main.ts',
        tsConfig: './tsconfig.app.json',
        // Ferry's native addon when it was built (@ferry/native finds it beside the bundle)
        assets: [...assets, { input: '../../libs/native/build', glob: '*.node', output: 'native' }],
        optimization: false,
        outputHashing: 'none',
        generatePackageJson: false,
        sourceMap: true,
      }),
    ],
  };
};
