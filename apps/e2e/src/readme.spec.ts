/**
 * The README is part of the product: every environment variable STACK reads must be in its
 * configuration table, and the two commands must be the ones package.json runs.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { ENV_VARS } from '@stack/config';

const root = resolve(__dirname, '../../..');
const readme = readFileSync(resolve(root, 'README.md'), 'utf8');

describe('README', () => {
  it.each(ENV_VARS.map((v) => v.name))('documents %s in the configuration table', (name) => {
    expect(readme).toMatch(new RegExp(`^\\| \`${name}\` \\|`, 'm'));
  });

  it('gives the two commands, and package.json runs them', () => {
    expect(readme).toContain('npm start');
    expect(readme).toContain('npm test');
    const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBeDefined();
    expect(pkg.scripts.test).toBeDefined();
  });

  it('has no configuration row for a variable the code does not read', () => {
    const rows = [...readme.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(rows.sort()).toEqual(ENV_VARS.map((v) => v.name).sort());
  });
});
