/**
 * Keys for a laptop: when STACK_MASTER_KEYS or STACK_INTERNAL_SECRET is unset (never in
 * production — config refuses that), generate them once into STACK_DATA_DIR so a restart
 * can still decrypt what it stored, and warn that this is for local use.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { StackConfig } from '@stack/config';

interface StoredKeys {
  master_keys: string;
  internal_secret: string;
}

/** What STACK itself puts in STACK_DATA_DIR. */
const OWN_ENTRIES = /^(pgdata|generated-keys\.json(\..+\.tmp)?)$/;

/**
 * STACK_DATA_DIR holds the embedded database (whose files PGlite creates world-readable and
 * writable) and the generated keys, so only this user may enter it: created 0700, and an
 * existing directory open to others is closed — when it holds STACK's data only; a shared one
 * (/tmp, a home directory) is never changed: start-up stops and names it.
 */
export function ensurePrivateDataDir(dir: string, warn: (msg: string) => void): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = statSync(dir);
  if (!stat.isDirectory()) throw new Error(`STACK_DATA_DIR ${dir} is not a directory`);
  if ((stat.mode & 0o077) === 0) return;
  const mode = (stat.mode & 0o7777).toString(8);
  const foreign = readdirSync(dir).filter((entry) => !OWN_ENTRIES.test(entry));
  if (foreign.length) {
    throw new Error(`STACK_DATA_DIR ${dir} is open to other users (mode ${mode}) and holds more than STACK's data (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}): give STACK a directory of its own, or make this one private (chmod 700)`);
  }
  try {
    chmodSync(dir, 0o700);
  } catch (err) {
    throw new Error(`STACK_DATA_DIR ${dir} is open to other users (mode ${mode}) and could not be made private: ${(err as Error).message}`);
  }
  warn(`STACK_DATA_DIR ${dir} was open to other users (mode ${mode}): made it private (700).`);
}

export function withLocalSecrets(config: StackConfig, warn: (msg: string) => void): StackConfig {
  if (config.masterKeys && config.internalSecret) return config;
  ensurePrivateDataDir(config.dataDir, warn);
  const file = join(config.dataDir, 'generated-keys.json');
  const stored = readStoredKeys(file, warn) ?? createStoredKeys(file, warn);
  if (!config.masterKeys) warn(`STACK_MASTER_KEYS is unset: using a key generated into ${file}. Fine for local use; set it (from a secret store) anywhere else.`);
  return {
    ...config,
    masterKeys: config.masterKeys ?? stored.master_keys,
    internalSecret: config.internalSecret ?? stored.internal_secret,
  };
}

function readStoredKeys(file: string, warn: (msg: string) => void): StoredKeys | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    chmodSync(file, 0o600);
    warn(`${file} was open to other users: made it private (600).`);
  }
  let stored: Partial<StoredKeys> | undefined;
  try {
    stored = JSON.parse(text) as Partial<StoredKeys>;
  } catch {
    stored = undefined;
  }
  // Replacing a damaged file would orphan whatever its key encrypted: stop and say which file.
  if (typeof stored?.master_keys !== 'string' || typeof stored.internal_secret !== 'string') {
    throw new Error(`${file} is damaged (expected the JSON object STACK wrote, with master_keys and internal_secret). Restore it from a backup, or set STACK_MASTER_KEYS and STACK_INTERNAL_SECRET.`);
  }
  return stored as StoredKeys;
}

/**
 * Written under a temporary name and linked into place, so the file is never seen half-written
 * and two processes starting together on one STACK_DATA_DIR end up with the same keys: the
 * second link fails and that process reads the first one's file.
 */
function createStoredKeys(file: string, warn: (msg: string) => void): StoredKeys {
  const stored: StoredKeys = { master_keys: `local1:${randomBytes(32).toString('base64')}`, internal_secret: randomBytes(32).toString('base64') };
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temp, JSON.stringify(stored, null, 2), { mode: 0o600, flag: 'wx' });
  try {
    linkSync(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readStoredKeys(file, warn)!;
  } finally {
    unlinkSync(temp);
  }
  return stored;
}
