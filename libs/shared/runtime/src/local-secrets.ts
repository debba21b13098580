/**
 * Keys for a laptop: when STACK_MASTER_KEYS or STACK_INTERNAL_SECRET is unset (never in
 * production — config refuses that), generate them once into STACK_DATA_DIR so a restart
 * can still decrypt what it stored, and warn that this is for local use.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { StackConfig } from '@stack/config';

interface StoredKeys {
  master_keys: string;
  internal_secret: string;
}

export function withLocalSecrets(config: StackConfig, warn: (msg: string) => void): StackConfig {
  if (config.masterKeys && config.internalSecret) return config;
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const file = join(config.dataDir, 'generated-keys.json');
  let stored: StoredKeys;
  if (existsSync(file)) {
    stored = JSON.parse(readFileSync(file, 'utf8')) as StoredKeys;
  } else {
    stored = { master_keys: `local1:${randomBytes(32).toString('base64')}`, internal_secret: randomBytes(32).toString('base64') };
    writeFileSync(file, JSON.stringify(stored, null, 2), { mode: 0o600 });
  }
  if (!config.masterKeys) warn(`STACK_MASTER_KEYS is unset: using a key generated into ${file}. Fine for local use; set it (from a secret store) anywhere else.`);
  return {
    ...config,
    masterKeys: config.masterKeys ?? stored.master_keys,
    internalSecret: config.internalSecret ?? stored.internal_secret,
  };
}
