/**
 * Proves the tag matrix in eslint.config.mjs bites: imports that cross a forbidden boundary are
 * lint errors, allowed ones are not. Writes probe files into real projects, lints them in one
 * ESLint run (a child process: the config is an ES module), and removes them. The config ignores
 * probe files, so a concurrent `nx lint` never sees them; this run lints them with --no-ignore.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(__dirname, '..', '..');

const refused: [string, string, string][] = [
  ['data-access -> feature', 'libs/storage/src/lib', "import { UploadEngine } from '@ferry/uploads';"],
  ['util -> data-access', 'libs/errors/src/lib', "import { RedisKeys } from '@ferry/redis';"],
  ['scope:shared -> scope:ingest', 'libs/uploads/src/lib', "import { ByteStreamService } from '@ferry/bytestream';"],
  ['app code -> testing', 'apps/ingest-grpc/src/app', "import { tempDir } from '@ferry/testing';"],
  ['worker app -> ingest feature', 'apps/assembler-worker/src/app', "import { ByteStreamService } from '@ferry/bytestream';"],
];
const allowed: [string, string, string][] = [
  ['feature -> data-access', 'libs/uploads/src/lib', "import { SessionStore } from '@ferry/sessions';"],
  ['ingest app -> ingest feature', 'apps/ingest-grpc/src/app', "import { ByteStreamService } from '@ferry/bytestream';"],
];
const allowedInSpecs: [string, string, string][] = [
  ['a spec -> testing', 'apps/ingest-grpc/src/app', "import { tempDir } from '@ferry/testing';"],
];

interface EslintResult {
  filePath: string;
  messages: { ruleId: string | null; message: string }[];
}

describe('module boundaries (eslint.config.mjs)', () => {
  const files = new Map<string, string>(); // label -> path
  let results: EslintResult[] = [];

  beforeAll(() => {
    const all = [
      ...refused.map((c) => [...c, '.ts']),
      ...allowed.map((c) => [...c, '.ts']),
      ...allowedInSpecs.map((c) => [...c, '.e2e-spec.ts']),
    ];
    all.forEach(([label, dir, importLine, ext], i) => {
      const path = join(root, dir, `__boundary_probe_${i}${ext}`);
      const symbol = importLine.match(/\{ (\w+) \}/)?.[1];
      writeFileSync(path, `${importLine}\n\nexport const probe = ${symbol};\n`);
      files.set(label, path);
    });
    try {
      const out = execFileSync(
        process.execPath,
        [join(root, 'node_modules', 'eslint', 'bin', 'eslint.js'), '--format', 'json', '--no-ignore', ...files.values()],
        { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 },
      );
      results = JSON.parse(out) as EslintResult[];
    } catch (err) {
      // eslint exits 1 when it found errors: its JSON report is still on stdout
      results = JSON.parse((err as { stdout: string }).stdout) as EslintResult[];
    } finally {
      for (const path of files.values()) rmSync(path, { force: true });
    }
  });

  const boundaryErrors = (label: string) => {
    const path = files.get(label) as string;
    const result = results.find((r) => r.filePath === path);
    if (!result) throw new Error(`no lint result for ${relative(root, path)}`);
    const parseErrors = result.messages.filter((m) => m.ruleId === null);
    expect(parseErrors).toEqual([]);
    return result.messages.filter((m) => m.ruleId === '@nx/enforce-module-boundaries');
  };

  it.each(refused.map((c) => c[0]))('refuses %s', (label) => {
    expect(boundaryErrors(label)).not.toEqual([]);
  });

  it.each([...allowed, ...allowedInSpecs].map((c) => c[0]))('allows %s', (label) => {
    expect(boundaryErrors(label)).toEqual([]);
  });
});
