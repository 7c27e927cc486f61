// Ferry's proto/ travels with the bundle (dist/apps/cli/proto), found by @ferry/protocol.
module.exports = require('../../tools/webpack/app.config')(__dirname, [{ input: '../../proto', glob: '**/*', output: 'proto' }]);
