/**
 * `stack admin create-owner --email … --password … [--operator-name …] [--name …]`: creates an
 * operator and its first owner, straight in auth's schema (migrating it first), without starting
 * the services. `stack admin create-api-key --email … [--name …]` makes an API key for a member
 * (for headless setups: a CI bot, a benchmark) and prints it once. With the embedded Postgres, run it while STACK is stopped (one process owns the
 * data directory).
 */
import { loadConfig } from '@stack/config';
import { createLogger } from '@stack/observability';
import { createServiceDataSource, migrateUnderLock, startEmbeddedPostgres } from '@stack/persistence';
import type { CliCommand, ServiceDefinition } from '@stack/runtime';

import { AccountsService } from '../accounts/accounts.service';

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i !== -1) return args[i + 1];
  const inline = args.find((a) => a.startsWith(`--${name}=`));
  return inline?.slice(name.length + 3);
}

const USAGE = 'usage: stack admin create-owner --email EMAIL --password PASSWORD [--operator-name NAME] [--name NAME]\n       stack admin create-api-key --email EMAIL [--name NAME]\n';

export const adminCommand: CliCommand = {
  summary: 'administration: `admin create-owner --email … --password … [--operator-name …]` creates an operator and its first owner',
  async run(args: string[], available: readonly ServiceDefinition[]): Promise<number> {
    const [sub, ...rest] = args;
    if (sub !== 'create-owner' && sub !== 'create-api-key') {
      process.stderr.write(USAGE);
      return 2;
    }
    const email = flag(rest, 'email');
    const password = flag(rest, 'password');
    if (!email || (sub === 'create-owner' && !password)) {
      process.stderr.write(USAGE);
      return 2;
    }
    const auth = available.find((d) => d.service === 'auth');
    if (!auth) throw new Error('this binary does not contain the auth service');
    const config = loadConfig();
    const logger = createLogger({ level: config.logLevel, service: 'admin', instance: config.instanceId });
    const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: config.dataDir });
    const ds = createServiceDataSource({ service: 'auth', url: config.databaseUrl ?? embedded!.url, entities: [...auth.entities], migrations: [...auth.migrations], poolSize: 1 });
    try {
      await ds.initialize();
      await migrateUnderLock(ds, { logger });
      const accounts = new AccountsService({ dataSource: ds, config });
      if (sub === 'create-api-key') {
        const member = await accounts.findMemberForLogin(email);
        if (!member || member.status !== 'active') throw new Error(`no active member ${email.toLowerCase()}`);
        const { key } = await accounts.createApiKey(member, flag(rest, 'name') ?? 'cli');
        process.stdout.write(`${key}\n`);
        return 0;
      }
      const created = await accounts.createOperatorWithOwner({ email, password: password!, operatorName: flag(rest, 'operator-name') ?? 'My team', name: flag(rest, 'name') });
      process.stdout.write(`Created operator ${created.operator_id} with owner ${created.member_id} (${email.toLowerCase()}). Sign in at ${config.publicUrl}/login\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`stack admin ${sub}: ${(err as Error).message}\n`);
      return 1;
    } finally {
      if (ds.isInitialized) await ds.destroy();
      await embedded?.close();
    }
  },
};
