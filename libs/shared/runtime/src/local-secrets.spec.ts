/**
 * STACK_DATA_DIR in the one-process shape: the generated keys and the embedded database are
 * this user's alone (directory 0700, key file 0600), whoever created the directory, and the
 * keys themselves never reach a log line.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadConfig, type StackConfig } from '@stack/config';
import { MemoryLogDestination, createLogger } from '@stack/observability';

import { withLocalSecrets } from './local-secrets';
import { withServiceDatabases } from './service-databases';

const modeOf = (path: string) => statSync(path).mode & 0o777;

describe('STACK_DATA_DIR', () => {
  let root: string;
  let warnings: string[];
  const warn = (msg: string) => warnings.push(msg);
  const configIn = (dataDir: string, env: Record<string, string> = {}): StackConfig => loadConfig({ STACK_DATA_DIR: dataDir, ...env });

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'stack-data-dir-'));
    warnings = [];
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('generates the keys once, into a directory only this user can enter (0700) and a file only it can read (0600), and logs the path, never a key', () => {
    const dataDir = join(root, 'a', '.stack');
    const first = withLocalSecrets(configIn(dataDir), warn);
    expect(modeOf(dataDir)).toBe(0o700);
    const file = join(dataDir, 'generated-keys.json');
    expect(modeOf(file)).toBe(0o600);
    expect(first.masterKeys).toMatch(/^local1:[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(first.internalSecret!, 'base64')).toHaveLength(32);
    expect(warnings.join('\n')).toContain(file);
    for (const secret of [first.masterKeys!.split(':')[1]!, first.internalSecret!]) expect(warnings.join('\n')).not.toContain(secret);
    // A restart reads the same keys back (what they encrypted stays readable).
    const second = withLocalSecrets(configIn(dataDir), warn);
    expect([second.masterKeys, second.internalSecret]).toEqual([first.masterKeys, first.internalSecret]);
  });

  it('closes an existing STACK_DATA_DIR and key file that other users could open', () => {
    const dataDir = join(root, '.stack');
    mkdirSync(dataDir, { mode: 0o755 });
    chmodSync(dataDir, 0o755);
    const file = join(dataDir, 'generated-keys.json');
    const kept = { master_keys: `local1:${Buffer.alloc(32, 1).toString('base64')}`, internal_secret: Buffer.alloc(32, 2).toString('base64') };
    writeFileSync(file, JSON.stringify(kept));
    chmodSync(file, 0o644);
    const config = withLocalSecrets(configIn(dataDir), warn);
    expect({ dir: modeOf(dataDir).toString(8), file: modeOf(file).toString(8) }).toEqual({ dir: '700', file: '600' });
    expect([config.masterKeys, config.internalSecret]).toEqual([kept.master_keys, kept.internal_secret]);
    expect(warnings.filter((w) => /made it private/.test(w))).toHaveLength(2);
  });

  it('never changes a shared directory (/tmp, a home): it stops and asks for a directory of its own', () => {
    const shared = join(root, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    writeFileSync(join(shared, 'someone-elses.txt'), 'x');
    expect(() => withLocalSecrets(configIn(shared), warn)).toThrow(/holds more than STACK's data \(someone-elses\.txt\): give STACK a directory of its own/);
    expect(statSync(shared).mode & 0o7777).toBe(0o1777);
    expect(() => withLocalSecrets(configIn(join(shared, 'stack')), warn)).not.toThrow();
    expect(modeOf(join(shared, 'stack'))).toBe(0o700);
  });

  it('stops, naming the file, when the key file is damaged, rather than replacing the keys that encrypted the data', () => {
    const dataDir = join(root, '.stack');
    mkdirSync(dataDir, { mode: 0o700 });
    const file = join(dataDir, 'generated-keys.json');
    writeFileSync(file, '{"master_keys": "local1:', { mode: 0o600 });
    expect(() => withLocalSecrets(configIn(dataDir), warn)).toThrow(`${file} is damaged`);
    expect(readFileSync(file, 'utf8')).toBe('{"master_keys": "local1:');
  });

  it('keeps the embedded database private too when the keys come from the environment', async () => {
    const dataDir = join(root, 'data');
    const config = configIn(dataDir, { STACK_MASTER_KEYS: `k1:${Buffer.alloc(32, 3).toString('base64')}`, STACK_INTERNAL_SECRET: Buffer.alloc(32, 4).toString('base64') });
    expect(withLocalSecrets(config, warn)).toBe(config); // nothing generated, nothing created
    const out = new MemoryLogDestination();
    const logger = createLogger({ level: 'warn', service: 'test', instance: 'test', destination: out });
    const modes = await withServiceDatabases(config, logger, [], async () => ({ dataDir: modeOf(dataDir).toString(8) }));
    expect(modes).toEqual({ dataDir: '700' });
  }, 60_000);
});
