/**
 * `stack admin rotate-master-key`: the operator's side of key rotation.
 *   (no flag)   prints a fresh key entry and the three steps;
 *   --status    how many connections and deposited drop-off payloads each key id still wraps;
 *   --rewrap    re-wraps all of them under the current (first) key now, then prints --status.
 * Running services re-wrap in the background on their own (at start and every 10 minutes), so
 * --rewrap only hurries it. Key material is never printed except the newly generated entry.
 */
import { loadConfig } from '@stack/config';
import { createLogger } from '@stack/observability';
import { withServiceDatabases, type CliCommand, type ServiceDefinition } from '@stack/runtime';
import { EnvelopeCipher, KeyRotation, Keyring } from '@stack/security';

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
          '1. Add it SECOND in STACK_MASTER_KEYS (after the current entry) and roll the credential-proxy and passport services out.',
          '   Every replica can then open what the new key wraps; nothing uses it yet.',
          '2. Move it FIRST, keeping the old entries after it, and roll out again. New secrets use it at once and the services',
          '   re-wrap every data key in the background; a replica not yet rolled out still opens both (step 1 gave it the key).',
          '   Hurry it or watch it with `stack admin rotate-master-key --rewrap` / `--status` until no connection or drop-off',
          '   payload names the old key id.',
          '3. Remove the old entry from STACK_MASTER_KEYS and roll out again.',
          '(Putting it first in one step would leave the replicas still on the old list unable to open what the new ones seal or re-wrap until the rollout ends.)',
          '',
        ].join('\n'),
      );
      return 0;
    }
    const defs = available.filter((d) => d.sealedValues);
    if (defs.length === 0) {
      process.stderr.write('stack admin rotate-master-key: this binary holds no service with sealed values\n');
      return 78;
    }
    const config = loadConfig();
    if (!config.masterKeys) {
      process.stderr.write('stack admin rotate-master-key: STACK_MASTER_KEYS is not set\n');
      return 78;
    }
    const masterKeys = config.masterKeys;
    const logger = createLogger({ level: config.logLevel, service: 'admin', instance: config.instanceId });
    // Every table of sealed values in this binary: connections (credential-proxy), drop-off payloads (passport).
    return withServiceDatabases(config, logger, defs, async (databases) => {
      const tables = defs.flatMap((d) => d.sealedValues!(databases.get(d.service)!.dataSource));
      const keyring = Keyring.parse(masterKeys);
      if (mode === 'rewrap') {
        const cipher = new EnvelopeCipher(keyring);
        for (const t of tables) {
          const report = await new KeyRotation(t.store, cipher).rewrapAll({
            onError: (id, err) => process.stderr.write(`  could not re-wrap ${id}: ${err instanceof Error ? err.message : String(err)} (is its key still in STACK_MASTER_KEYS?)\n`),
          });
          process.stdout.write(`${t.label}: re-wrapped ${report.rewrapped}, skipped ${report.skipped} (changed meanwhile), failed ${report.failed}\n`);
        }
      }
      process.stdout.write(`current key: ${keyring.currentKeyId}\n`);
      let pending = false;
      for (const t of tables) {
        const byKey = await t.store.countByKey();
        for (const [kid, n] of Object.entries(byKey)) {
          if (kid !== keyring.currentKeyId) pending = true;
          process.stdout.write(`  ${kid}: ${n} ${t.label}${kid === keyring.currentKeyId ? '' : ' — still to re-wrap'}\n`);
        }
      }
      return pending && mode === 'rewrap' ? 1 : 0;
    });
  },
};
