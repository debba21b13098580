// One Jest configuration for the whole workspace. Tests are found by suffix:
//   *.spec.ts      unit tests (no servers)
//   *.int-spec.ts  integration tests against the real Postgres, NATS and Redis
//   *.e2e-spec.ts  end-to-end tests against running STACK processes
import type { Config } from 'jest';
import { readFileSync } from 'node:fs';

const tsconfig = JSON.parse(readFileSync(`${__dirname}/tsconfig.base.json`, 'utf8')) as {
  compilerOptions: { paths: Record<string, string[]> };
};
const moduleNameMapper: Record<string, string> = {};
for (const [alias, [target]] of Object.entries(tsconfig.compilerOptions.paths)) {
  moduleNameMapper[`^${alias.replace('/', '\\/')}$`] = `<rootDir>/${target}`;
}

const swc: [string, Record<string, unknown>] = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
      keepClassNames: true,
    },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  },
];

const common = {
  rootDir: __dirname,
  testEnvironment: 'node',
  moduleNameMapper,
  transform: { '^.+\\.(t|j)s$': swc },
  transformIgnorePatterns: ['/node_modules/(?!(jose|oidc-provider|oauth4webapi)/)'],
  moduleFileExtensions: ['ts', 'js', 'json'],
};

/** Tests on the real servers: long timeouts, and each file's JetStream streams and Redis keys deleted after it. */
const onServers = {
  testEnvironment: '<rootDir>/tools/jest/stack-environment.js',
  setupFilesAfterEnv: ['<rootDir>/tools/jest/long-timeout.js', '<rootDir>/tools/jest/drop-leftovers.ts'],
};

const config: Config = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs}/**/*.spec.ts'] },
    { ...common, ...onServers, displayName: 'integration', testMatch: ['<rootDir>/{apps,libs}/**/*.int-spec.ts'], slowTestThreshold: 30 },
    { ...common, ...onServers, displayName: 'e2e', testMatch: ['<rootDir>/apps/e2e/**/*.e2e-spec.ts'], slowTestThreshold: 60 },
  ],
};
export default config;
