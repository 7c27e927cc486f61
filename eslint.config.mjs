// Lint rules for the whole workspace. Module boundaries are enforced by tags:
//   type:app -> feature, data-access, util      type:feature -> feature, data-access, util
//   type:data-access -> data-access, util        type:util -> util
//   scope:<x> -> scope:<x>, scope:shared          scope:shared -> scope:shared
// type:testing libs may be imported only from tests (*.spec.ts, *.e2e-spec.ts, *.harness.ts, tools/).
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

const typeRules = [
  { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:feature', 'type:data-access', 'type:util'] },
  { sourceTag: 'type:feature', onlyDependOnLibsWithTags: ['type:feature', 'type:data-access', 'type:util'] },
  { sourceTag: 'type:data-access', onlyDependOnLibsWithTags: ['type:data-access', 'type:util'] },
  { sourceTag: 'type:util', onlyDependOnLibsWithTags: ['type:util'] },
  { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:testing'] },
];
const scopeRules = [
  { sourceTag: 'scope:shared', onlyDependOnLibsWithTags: ['scope:shared'] },
  { sourceTag: 'scope:ingest', onlyDependOnLibsWithTags: ['scope:ingest', 'scope:shared'] },
  { sourceTag: 'scope:multipart', onlyDependOnLibsWithTags: ['scope:multipart', 'scope:shared'] },
  { sourceTag: 'scope:object', onlyDependOnLibsWithTags: ['scope:object', 'scope:shared'] },
  { sourceTag: 'scope:worker', onlyDependOnLibsWithTags: ['scope:worker', 'scope:shared'] },
  { sourceTag: 'scope:cli', onlyDependOnLibsWithTags: ['scope:cli', 'scope:shared'] },
];
const boundaries = (allowTesting) => [
  'error',
  {
    enforceBuildableLibDependency: true,
    banTransitiveDependencies: false,
    allow: [],
    depConstraints: [
      ...typeRules.map((r) =>
        allowTesting && r.sourceTag !== 'type:testing'
          ? { ...r, onlyDependOnLibsWithTags: [...r.onlyDependOnLibsWithTags, 'type:testing'] }
          : r,
      ),
      ...scopeRules,
    ],
  },
];

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  {
    ignores: [
      '**/__boundary_probe_*',
      '**/dist',
      '**/node_modules',
      '**/generated/**',
      'tmp/**',
      'data/**',
      '**/jest.config.ts',
      '**/jest.*.config.ts',
      '**/webpack.config.js',
    ],
  },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@nx/enforce-module-boundaries': boundaries(false),
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Read configuration through @ferry/config (loadConfig), not process.env.',
        },
      ],
    },
  },
  {
    files: [
      '**/*.spec.ts',
      '**/*.e2e-spec.ts',
      '**/*.harness.ts',
      'tools/**/*.ts',
      'libs/testing/**/*.ts',
      'libs/config/src/lib/config.ts',
    ],
    rules: {
      '@nx/enforce-module-boundaries': boundaries(true),
      'no-restricted-syntax': 'off',
    },
  },
];
