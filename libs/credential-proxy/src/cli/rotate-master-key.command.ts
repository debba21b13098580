/**
 * `stack admin rotate-master-key`: the operator's side of key rotation.
 *   (no flag)   prints a fresh key entry and the three steps;
 *   --status    how many connections each key id still wraps;
 *   --rewrap    re-wraps every connection under the current (first) key now, then prints --status.
 * Running services re-wrap in the background on their own (at start and every 10 minutes), so
 * --rewrap only hurries it. Key material is never printed except the newly generated entry.
 */
import { loadConfig } from '@stack/config';
import { createLogger } from '@stack/observability';
import { definitionOf, withServiceDatabases, type CliCommand, type ServiceDefinition } from '@stack/runtime';
import { EnvelopeCipher, Keyring } from '@stack/security';

import { ConnectionRepository } from '../connections/connection.repository';
import { VaultRotation } from '../vault/vault-rotation';

export const rotateMasterKeyCommand: CliCommand = {
  summary: '`admin rotate-master-key [--status|--rewrap]` rotates the vault key-encryption key without downtime',
  async run(args: string[], available: readonly ServiceDefinition[]): Promise<number> {
    const mode = args.includes('--rewrap') ? 'rewrap' : args.includes('--status') ? 'status' : 'new';
    if (mode === 'new') {
      const id = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}${Math.floor(Math.random() * 1000)}`;
      process.stdout.write(
        [
          'New key entry (store it in your secret manager; it is shown once):',
          '',
          `  ${Keyring.generateEntry(id)}`,
          '',
          '1. Put it FIRST in STACK_MASTER_KEYS, keeping the old entries after it, and roll the credential-proxy out.',
          '   New secrets use it at once; old ones still open with the old key.',
          '2. The services re-wrap every data key in the background. Hurry it or watch it with',
          '   `stack admin rotate-master-key --rewrap` / `--status` until no connection names the old key id.',
          '3. Remove the old entry from STACK_MASTER_KEYS and roll out again.',
          '',
        ].join('\n'),
      );
      return 0;
    }
    const def = definitionOf(available, 'credential-proxy');
    const config = loadConfig();
    if (!config.masterKeys) {
      process.stderr.write('stack admin rotate-master-key: STACK_MASTER_KEYS is not set\n');
      return 78;
    }
    const masterKeys = config.masterKeys;
    const logger = createLogger({ level: config.logLevel, service: 'admin', instance: config.instanceId });
    return withServiceDatabases(config, logger, [def], async (databases) => {
      const repo = new ConnectionRepository(databases.get('credential-proxy')!.dataSource);
      const keyring = Keyring.parse(masterKeys);
      if (mode === 'rewrap') {
        const report = await new VaultRotation(repo, new EnvelopeCipher(keyring)).rewrapAll({
          onError: (id, err) => process.stderr.write(`  could not re-wrap ${id}: ${err instanceof Error ? err.message : String(err)} (is its key still in STACK_MASTER_KEYS?)\n`),
        });
        process.stdout.write(`re-wrapped ${report.rewrapped}, skipped ${report.skipped} (changed meanwhile), failed ${report.failed}\n`);
      }
      const byKey = await repo.countByKey();
      process.stdout.write(`current key: ${keyring.currentKeyId}\n`);
      for (const [kid, n] of Object.entries(byKey)) process.stdout.write(`  ${kid}: ${n} connection(s)${kid === keyring.currentKeyId ? '' : ' — still to re-wrap'}\n`);
      return Object.keys(byKey).every((k) => k === keyring.currentKeyId) ? 0 : mode === 'rewrap' ? 1 : 0;
    });
  },
};
