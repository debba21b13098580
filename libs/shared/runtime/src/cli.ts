/**
 * The `stack` command line: `serve` (default) runs the services, `migrate` applies every
 * pending migration under the advisory lock and exits (the Kubernetes Job), `asyncapi`
 * prints the bus contract. Configuration problems end the process with the named variables.
 */
import { ConfigError, loadConfig } from '@stack/config';
import { asyncApiJson } from '@stack/contracts';
import { createLogger } from '@stack/observability';

import { withLocalSecrets } from './local-secrets';
import { withServiceDatabases } from './service-databases';
import type { ServiceDefinition } from './service-definition';
import { startStack } from './start-stack';

export interface CliCommand {
  summary: string;
  run(args: string[], available: readonly ServiceDefinition[]): Promise<number>;
}

export interface RunCliOptions {
  available: readonly ServiceDefinition[];
  argv: string[];
  commands?: Record<string, CliCommand>;
}

function banner(url: string, publicUrl: string, embedded: boolean): string {
  return [
    '',
    `  STACK is running at ${publicUrl}${publicUrl !== url ? `  (listening on ${url})` : ''}`,
    '',
    '  Connect Claude Code:',
    `    claude mcp add stack --transport http ${publicUrl}/mcp`,
    '',
    `  Health: ${publicUrl}/readyz    API description: ${publicUrl}/v1/openapi.json`,
    embedded ? '  Data: embedded Postgres and in-process bus (set DATABASE_URL, NATS_URL, REDIS_URL for the real servers).' : '',
    '  Stop with Ctrl-C.',
    '',
  ].join('\n');
}

const builtins: Record<string, CliCommand> = {
  serve: {
    summary: 'run the services chosen by STACK_SERVICES (default: all, in this one process)',
    async run(_args, available) {
      const stack = await startStack({ available, handleSignals: true });
      if (stack.config.services.length === available.length || !stack.config.databaseUrl) {
        process.stderr.write(`${banner(stack.url, stack.config.publicUrl, !stack.config.databaseUrl)}\n`);
      }
      return new Promise<number>(() => undefined); // runs until a signal ends the process
    },
  },
  migrate: {
    summary: 'apply pending migrations of the services in STACK_SERVICES, under an advisory lock, then exit',
    async run(_args, available) {
      let config = loadConfig();
      const logger = createLogger({ level: config.logLevel, service: 'migrate', instance: config.instanceId });
      config = withLocalSecrets(config, (m) => logger.warn(m));
      await withServiceDatabases(config, logger, available.filter((d) => config.services.includes(d.service)), async (databases) => {
        for (const [service, { applied }] of databases) logger.info({ service, applied }, applied.length ? 'migrations applied' : 'schema is current');
      });
      return 0;
    },
  },
  asyncapi: {
    summary: 'print the AsyncAPI 3 document of the bus contract (subjects use STACK_BUS_PREFIX)',
    async run() {
      process.stdout.write(`${asyncApiJson(process.env.STACK_BUS_PREFIX || 'stack')}\n`);
      return 0;
    },
  },
};

export async function runCli(options: RunCliOptions): Promise<void> {
  const commands = { ...builtins, ...options.commands };
  const [name = 'serve', ...rest] = options.argv;
  if (name === 'help' || name === '--help' || name === '-h' || !commands[name]) {
    const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(24)} ${c.summary}`);
    process.stdout.write(`Usage: stack <command>\n\nCommands:\n${lines.join('\n')}\n\nConfiguration comes from environment variables; see README.md.\n`);
    process.exitCode = commands[name] || name === 'help' || name === '--help' || name === '-h' ? 0 : 2;
    return;
  }
  try {
    const code = await commands[name]!.run(rest, options.available);
    process.exit(code);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    process.stderr.write(`stack ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  }
}
