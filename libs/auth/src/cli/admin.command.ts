/**
 * `stack admin create-owner --email … (--password-stdin | --password …) [--operator-name …] [--name …]`:
 * creates an operator and its first owner, straight in auth's schema (migrating it first), without starting
 * the services. `stack admin create-api-key --email … [--name …]` makes an API key for a member
 * (for headless setups: a CI bot, a benchmark) and prints it once. With the embedded Postgres, run it while STACK is stopped (one process owns the
 * data directory).
 */
import type { Readable } from 'node:stream';

import { loadConfig } from '@stack/config';
import { STACK_SCOPES } from '@stack/contracts';
import { createLogger } from '@stack/observability';
import { definitionOf, withServiceDatabases, type CliCommand, type ServiceDefinition } from '@stack/runtime';

import { AccountsService } from '../accounts/accounts.service';

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i !== -1) return args[i + 1];
  const inline = args.find((a) => a.startsWith(`--${name}=`));
  return inline?.slice(name.length + 3);
}

/**
 * The password of `create-owner`: with `--password-stdin`, the first line of standard input
 * (`printf '%s\n' "$PW" | stack admin create-owner … --password-stdin`), which no other user of
 * the machine sees — a `--password` argument shows in `ps` and the shell's history.
 */
export async function ownerPassword(args: string[], stdin: Readable): Promise<string | undefined> {
  if (!args.includes('--password-stdin')) return flag(args, 'password');
  let text = '';
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    if (text.includes('\n') || text.length > 4096) break;
  }
  const line = text.split('\n')[0]!.replace(/\r$/, '');
  return line || undefined;
}

const USAGE = 'usage: stack admin create-owner --email EMAIL (--password-stdin | --password PASSWORD) [--operator-name NAME] [--name NAME]\n       stack admin create-api-key --email EMAIL [--name NAME]\n';

export const adminCommand: CliCommand = {
  summary: 'administration: `admin create-owner --email … --password-stdin` (an operator and its first owner), `admin create-api-key --email …`, `admin rotate-master-key`',
  async run(args: string[], available: readonly ServiceDefinition[]): Promise<number> {
    const [sub, ...rest] = args;
    if (sub !== 'create-owner' && sub !== 'create-api-key') {
      process.stderr.write(USAGE);
      return 2;
    }
    const email = flag(rest, 'email');
    const password = sub === 'create-owner' ? await ownerPassword(rest, process.stdin) : undefined;
    if (!email || (sub === 'create-owner' && !password)) {
      if (sub === 'create-owner' && rest.includes('--password-stdin')) process.stderr.write('stack admin create-owner: standard input held no password (its first line was empty)\n');
      process.stderr.write(USAGE);
      return 2;
    }
    const config = loadConfig();
    const logger = createLogger({ level: config.logLevel, service: 'admin', instance: config.instanceId });
    try {
      return await withServiceDatabases(config, logger, [definitionOf(available, 'auth')], async (databases) => {
        const accounts = new AccountsService({ dataSource: databases.get('auth')!.dataSource, config });
        if (sub === 'create-api-key') {
          const member = await accounts.findMemberForLogin(email);
          if (!member || member.status !== 'active') throw new Error(`no active member ${email.toLowerCase()}`);
          // Whoever runs this holds the database: the key gets every scope the member's role allows.
          const { key } = await accounts.createApiKey(member, flag(rest, 'name') ?? 'cli', STACK_SCOPES);
          process.stdout.write(`${key}\n`);
          return 0;
        }
        const created = await accounts.createOperatorWithOwner({ email, password: password!, operatorName: flag(rest, 'operator-name') ?? 'My team', name: flag(rest, 'name') });
        process.stdout.write(`Created operator ${created.operator_id} with owner ${created.member_id} (${email.toLowerCase()}). Sign in at ${config.publicUrl}/login\n`);
        return 0;
      });
    } catch (err) {
      process.stderr.write(`stack admin ${sub}: ${(err as Error).message}\n`);
      return 1;
    }
  },
};
