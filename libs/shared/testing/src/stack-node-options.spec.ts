import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { STACK_NODE_OPTIONS } from './stack-topology';
import { repoRoot } from './test-artifacts';

describe('STACK_NODE_OPTIONS', () => {
  // The container image's CMD is checked with the Dockerfile (apps/e2e/src/k8s-dockerfile.spec.ts).
  it('are the options of `npm start` too', () => {
    const bootstrap = readFileSync(join(repoRoot(), 'tools/bootstrap.mjs'), 'utf8');
    const declared = /const STACK_NODE_OPTIONS = (\[[^\]]*\]);/.exec(bootstrap)?.[1];
    expect(declared && (JSON.parse(declared.replace(/'/g, '"')) as string[])).toEqual([...STACK_NODE_OPTIONS]);
    expect(bootstrap).toMatch(/runEntry\('start', 'apps\/stack\/src\/main\.js', argv, STACK_NODE_OPTIONS\)/);
  });

  it('are options this Node accepts (a misspelt one would stop every server at start)', () => {
    expect(execFileSync(process.execPath, [...STACK_NODE_OPTIONS, '-e', "process.stdout.write('up')"], { encoding: 'utf8' })).toBe('up');
    expect(() => execFileSync(process.execPath, ['--max-semi-space-size=nonsense', '-e', '0'], { stdio: 'pipe' })).toThrow();
  });
});
