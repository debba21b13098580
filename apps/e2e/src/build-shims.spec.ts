/**
 * tools/build.mjs runs again on every `npm start` (and so inside the e2e suite, beside STACK
 * processes that are loading dist/). Rewriting a shim in place there once let a starting process
 * read it empty: `@stack/security` came back as `{}` and the process died on
 * "CallerContextSigner is not a constructor". Shims are now replaced only when their content
 * changes, and then by rename, so a reader sees the old file or the new one, never a torn one.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { repoRoot } from '@stack/testing';

/** Runs `body` (an ES module snippet with `replaceFile`/`writeAliasShims` in scope) in a plain Node child. */
function withBuildTool(body: string): string {
  const tool = JSON.stringify(join(repoRoot(), 'tools', 'build.mjs'));
  return execFileSync(process.execPath, ['--input-type=module', '-e', `import { replaceFile, writeAliasShims } from ${tool};\n${body}`], { cwd: repoRoot(), encoding: 'utf8' });
}

describe('tools/build.mjs shims', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stack-shim-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('leaves a file that already holds the content untouched (same inode, same mtime)', () => {
    const file = join(dir, 'index.js');
    writeFileSync(file, 'module.exports = 1;\n');
    const before = statSync(file);
    const out = withBuildTool(`process.stdout.write(String(replaceFile(${JSON.stringify(file)}, 'module.exports = 1;\\n')));`);
    expect(out).toBe('false');
    const after = statSync(file);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
  });

  it('replaces a changed file by rename: a new inode with the whole new content, no temporary left', () => {
    const file = join(dir, 'index.js');
    writeFileSync(file, 'module.exports = 1;\n');
    const before = statSync(file);
    const out = withBuildTool(`process.stdout.write(String(replaceFile(${JSON.stringify(file)}, 'module.exports = 2;\\n')));`);
    expect(out).toBe('true');
    expect(readFileSync(file, 'utf8')).toBe('module.exports = 2;\n');
    expect(statSync(file).ino).not.toBe(before.ino);
    expect(execFileSync('ls', [dir], { encoding: 'utf8' }).trim()).toBe('index.js');
  });

  it('writes an absent file', () => {
    const file = join(dir, 'fresh.js');
    withBuildTool(`replaceFile(${JSON.stringify(file)}, 'x');`);
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('does not touch the shims of a current dist/ when run again', () => {
    const shim = join(repoRoot(), 'dist', 'node_modules', '@stack', 'security', 'index.js');
    withBuildTool('writeAliasShims();');
    const before = statSync(shim);
    withBuildTool('writeAliasShims();');
    const after = statSync(shim);
    expect({ ino: after.ino, mtimeMs: after.mtimeMs }).toEqual({ ino: before.ino, mtimeMs: before.mtimeMs });
  });
});
