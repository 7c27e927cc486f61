// The upload page's static files (GET /upload) go beside main.js, where UploadPageController looks first.
module.exports = require('../../tools/webpack/app.config')(__dirname, [
  { input: './src/assets/upload', glob: '**/*', output: 'assets/upload' },
]);
