// Lint exists mainly to make the architecture real: a service lib that imports another
// service's lib, or a contracts file that pulls in I/O, fails here (and so in CI).
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

export default [
  { ignores: ['**/node_modules/**', '**/dist/**', '**/tmp/**', '**/.stack/**', '**/.nx/**', 'tools/**', '**/*.js', '**/*.mjs'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { '@nx': nx },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: ['type:contracts'] },
            { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:contracts'] },
            { sourceTag: 'type:shared', onlyDependOnLibsWithTags: ['type:shared', 'type:contracts', 'type:testing'] },
            { sourceTag: 'type:service', onlyDependOnLibsWithTags: ['type:shared', 'type:contracts', 'type:testing'] },
            { sourceTag: 'scope:shared', onlyDependOnLibsWithTags: ['scope:shared'] },
            { sourceTag: 'scope:auth', onlyDependOnLibsWithTags: ['scope:auth', 'scope:shared'] },
            { sourceTag: 'scope:mcp-gateway', onlyDependOnLibsWithTags: ['scope:mcp-gateway', 'scope:shared'] },
            { sourceTag: 'scope:credential-proxy', onlyDependOnLibsWithTags: ['scope:credential-proxy', 'scope:shared'] },
            { sourceTag: 'scope:passport', onlyDependOnLibsWithTags: ['scope:passport', 'scope:shared'] },
            { sourceTag: 'scope:skill-runner', onlyDependOnLibsWithTags: ['scope:skill-runner', 'scope:shared'] },
            { sourceTag: 'scope:audit', onlyDependOnLibsWithTags: ['scope:audit', 'scope:shared'] },
            { sourceTag: 'scope:stack', onlyDependOnLibsWithTags: ['*'] },
            { sourceTag: 'scope:e2e', onlyDependOnLibsWithTags: ['scope:shared'] },
            { sourceTag: 'scope:bench', onlyDependOnLibsWithTags: ['scope:shared'] },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.spec.ts', '**/*.int-spec.ts', '**/*.e2e-spec.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
];
