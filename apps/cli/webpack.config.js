// The `ferry` bundle, dist/apps/cli: main.js, Ferry's proto/ (dist/apps/cli/proto, found by
// @ferry/protocol), and a package of its own (package.json, the `ferry.js` bin), so that
// `npm pack dist/apps/cli` makes a tarball that `npm install -g` installs as a working `ferry`.
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Compilation, ExternalModule, sources } = require('webpack');

const root = JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8'));
/** Needed at run time though the bundle does not `require` it by name (@ferry/protocol resolves it with createRequire). */
const RESOLVED_AT_RUNTIME = ['google-proto-files'];

/** Emits dist/apps/cli/package.json: the bundle's external packages as dependencies, pinned to the root's versions. */
class FerryPackagePlugin {
  apply(compiler) {
    compiler.hooks.thisCompilation.tap('FerryPackagePlugin', (compilation) => {
      compilation.hooks.processAssets.tap({ name: 'FerryPackagePlugin', stage: Compilation.PROCESS_ASSETS_STAGE_ADDITIONAL }, () => {
        const external = new Set(RESOLVED_AT_RUNTIME);
        for (const m of compilation.modules) {
          if (!(m instanceof ExternalModule)) continue;
          const request = Array.isArray(m.request) ? m.request[0] : String(m.request);
          if (request.startsWith('node:') || require('node:module').isBuiltin(request)) continue;
          external.add(request.startsWith('@') ? request.split('/').slice(0, 2).join('/') : request.split('/')[0]);
        }
        const dependencies = {};
        for (const name of [...external].sort()) {
          const version = root.dependencies?.[name];
          if (!version) {
            compilation.errors.push(new Error(`ferry's bundle needs ${name}, which is not a dependency of the root package.json`));
            continue;
          }
          dependencies[name] = version;
        }
        const pkg = {
          name: '@ferry/cli',
          version: root.version,
          description: 'ferry: resumable uploads and downloads over Ferry (ByteStream, GCS, multipart, tus, object API)',
          license: root.license,
          bin: { ferry: 'ferry.js' },
          main: 'main.js',
          files: ['ferry.js', 'main.js', 'main.js.map', 'proto', 'native'],
          engines: root.engines,
          dependencies,
        };
        compilation.emitAsset('package.json', new sources.RawSource(`${JSON.stringify(pkg, null, 2)}\n`));
        compilation.emitAsset('ferry.js', new sources.RawSource("#!/usr/bin/env node\n'use strict';\nrequire('./main.js');\n"));
      });
    });
  }
}

const config = require('../../tools/webpack/app.config')(__dirname, [{ input: '../../proto', glob: '**/*', output: 'proto' }]);
config.plugins.push(new FerryPackagePlugin());
module.exports = config;
