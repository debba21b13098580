/**
 * The architecture is enforced, not just drawn: lint refuses a service library that imports
 * another service's library, and a contracts file that reaches for anything with I/O.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

const root = resolve(__dirname, '../../..');

interface LintResult {
  messages: { ruleId: string | null; message: string }[];
}

/** Lints `code` as if it were `file`, with the repository's own ESLint configuration. */
async function lint(file: string, code: string): Promise<string[]> {
  let out: string;
  try {
    out = execFileSync(resolve(root, 'node_modules/.bin/eslint'), ['--format', 'json', '--stdin', '--stdin-filename', file], { cwd: root, input: code, encoding: 'utf8' });
  } catch (err) {
    // ESLint exits 1 when it found problems; its report is still on stdout.
    out = (err as { stdout: string }).stdout;
  }
  const [result] = JSON.parse(out) as LintResult[];
  return (result?.messages ?? []).filter((m) => m.ruleId === '@nx/enforce-module-boundaries').map((m) => m.message);
}

describe('module boundaries', () => {
  beforeAll(() => {
    // The rule reads Nx's project graph; compute it as `npm test` does before linting.
    execFileSync(resolve(root, 'node_modules/.bin/nx'), ['show', 'projects'], { cwd: root, env: { ...process.env, NX_DAEMON: 'false' }, stdio: 'ignore' });
  });

  it('refuses a service library importing another service library', async () => {
    const messages = await lint('libs/auth/src/boundary-probe.ts', "import { passportService } from '@stack/passport';\nexport const p = passportService;\n");
    expect(messages.join('\n')).toMatch(/type:service.*can only depend on/);
  });

  it('refuses contracts importing a library with I/O', async () => {
    const messages = await lint('libs/shared/contracts/src/boundary-probe.ts', "import { connectNatsBus } from '@stack/bus';\nexport const c = connectNatsBus;\n");
    expect(messages.length).toBeGreaterThan(0);
  });

  it('allows a service library to use the shared libraries', async () => {
    const messages = await lint('libs/auth/src/boundary-probe.ts', "import { StackError } from '@stack/contracts';\nimport type { Bus } from '@stack/bus';\nexport type B = Bus;\nexport const e = StackError;\n");
    expect(messages).toEqual([]);
  });
});
