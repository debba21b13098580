/**
 * Where test runs leave what a person needs to debug them: the logs of every process a test
 * started, under the repository's gitignored `test-artifacts/` (kept until the next `npm test`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

let root: string | undefined;

/** The repository root (the folder holding nx.json), found from this file so it works from src and from dist. */
export function repoRoot(): string {
  if (root) return root;
  let dir = __dirname;
  for (;;) {
    if (existsSync(join(dir, 'nx.json')) && existsSync(join(dir, 'package.json'))) {
      root = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the repository root (nx.json) above ${__dirname}`);
    dir = parent;
  }
}

/** `test-artifacts/<parts…>` in the repository, created if missing. */
export function artifactsDir(...parts: string[]): string {
  const dir = join(repoRoot(), 'test-artifacts', ...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}
