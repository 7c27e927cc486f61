// A jest reporter that appends every failing test (its suite, name and first lines of its failure)
// to tmp/test-failures.log, which `npm test` prints again at its very end when something failed:
// nx runs many jest processes in turn, and a failure early in a long run is otherwise far above
// the end of the log, where CI shows only the last lines.
const { appendFileSync, mkdirSync } = require('node:fs');
const { join, relative } = require('node:path');

const root = join(__dirname, '../..');
const LOG = join(root, 'tmp/test-failures.log');
const strip = (text) => text.replace(/\u001b\[[0-9;]*m/g, '');

class FailureLog {
  onRunComplete(_contexts, results) {
    const lines = [];
    for (const suite of results.testResults) {
      const file = relative(root, suite.testFilePath);
      if (suite.testExecError) lines.push(`${file}: the suite failed to run: ${strip(suite.testExecError.message).slice(0, 2000)}`);
      for (const test of suite.testResults) {
        if (test.status !== 'failed') continue;
        const message = strip(test.failureMessages.join('\n'))
          .split('\n')
          .filter((line) => !line.includes('/node_modules/'))
          .slice(0, 40)
          .join('\n');
        lines.push(`${file} › ${test.fullName}\n${message}`);
      }
    }
    if (lines.length === 0) return;
    mkdirSync(join(root, 'tmp'), { recursive: true });
    appendFileSync(LOG, `${lines.join('\n\n')}\n\n`);
  }
}

module.exports = FailureLog;
