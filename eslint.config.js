import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Module boundaries (see DESIGN §6). Each area lists what it must not import; ESLint replaces (does
// not merge) a rule's options per file, so every file gets one combined entry from `boundaries`.
const NOT_LAB = { group: ['**/lab', '**/lab/**'], message: 'product code never imports the lab (src/lab/); only src/lab/ and the CLI\'s lab commands (src/cli/lab*) do' };
const NOT_INSTALL = { group: ['**/install', '**/install/**'], message: 'the control plane does not import the installer; put shared names and types in src/api/' };
const NOT_CONTROLPLANE = { group: ['**/controlplane', '**/controlplane/**'], message: 'the installer does not import the control plane; put shared names and types in src/api/' };
// Informers and watches go through src/kube/ (one restart loop and backoff, watch deadlines).
const NOT_RAW_INFORMERS = {
  name: '@kubernetes/client-node',
  importNames: ['makeInformer', 'ListWatch', 'Watch'],
  message: 'use createInformer/startInformer from src/kube/ (one backoff, watch deadlines)',
};
const NO_LAB_DYNAMIC_IMPORT = {
  selector: "ImportExpression[source.value=/(^|\\/)lab(\\/|$)/]",
  message: NOT_LAB.message,
};
// Every API client comes from src/kube/ (apiClient) so that every call has a request timeout.
const NO_MAKE_API_CLIENT = {
  selector: "CallExpression[callee.property.name='makeApiClient']",
  message: 'use apiClient(config, Type) from src/kube/: client-node\'s own clients have no request timeout',
};

function boundaries(files, { ignores = [], patterns = [], paths = [], syntax = [] }) {
  return {
    files,
    ignores,
    rules: {
      'no-restricted-imports': ['error', { patterns, paths }],
      ...(syntax.length ? { 'no-restricted-syntax': ['error', ...syntax] } : {}),
    },
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/gen/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  boundaries(['src/**/*.ts'], {
    ignores: ['src/lab/**', 'src/cli/lab*.ts', 'src/kube/**', 'src/controlplane/**', 'src/install/**'],
    patterns: [NOT_LAB],
    paths: [NOT_RAW_INFORMERS],
    syntax: [NO_LAB_DYNAMIC_IMPORT, NO_MAKE_API_CLIENT],
  }),
  boundaries(['src/controlplane/**/*.ts'], { patterns: [NOT_LAB, NOT_INSTALL], paths: [NOT_RAW_INFORMERS], syntax: [NO_LAB_DYNAMIC_IMPORT, NO_MAKE_API_CLIENT] }),
  boundaries(['src/install/**/*.ts'], { patterns: [NOT_LAB, NOT_CONTROLPLANE], paths: [NOT_RAW_INFORMERS], syntax: [NO_LAB_DYNAMIC_IMPORT, NO_MAKE_API_CLIENT] }),
  // The lab may import the product, but talks to its API servers through the kit as well.
  boundaries(['src/lab/**/*.ts', 'src/cli/lab*.ts'], { paths: [NOT_RAW_INFORMERS], syntax: [NO_MAKE_API_CLIENT] }),
  {
    files: ['bin/**/*.js', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
