/**
 * A bad environment stops the process at once with a message naming each bad variable.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

import { ensureStackBuilt } from '@stack/testing';

const root = resolve(__dirname, '../../..');

describe('configuration errors', () => {
  it('names every bad variable and exits with EX_CONFIG (78), before opening anything', async () => {
    const entry = await ensureStackBuilt();
    const run = spawnSync(process.execPath, [entry], {
      cwd: root,
      env: { PATH: process.env.PATH, PORT: 'eighty', STACK_BUS_PREFIX: 'has.dots', DATABASE_URL: 'mysql://root:hunter2@db/x' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).toBe(78);
    expect(run.stderr).toContain('PORT: expected a whole number');
    expect(run.stderr).toContain('STACK_BUS_PREFIX');
    expect(run.stderr).toContain('DATABASE_URL');
    expect(run.stderr).not.toContain('hunter2');
  });

  it('refuses a subset of services without the servers it needs', async () => {
    const entry = await ensureStackBuilt();
    const run = spawnSync(process.execPath, [entry], { cwd: root, env: { PATH: process.env.PATH, STACK_SERVICES: 'audit' }, encoding: 'utf8', timeout: 30_000 });
    expect(run.status).toBe(78);
    expect(run.stderr).toMatch(/NATS_URL: required when STACK_SERVICES runs a subset/);
  });
});
