/**
 * A separate process that serves `audit.ping` on the bus, for the cross-process tests.
 * Run with `node -r @swc-node/register`; configured through the environment.
 */
import { SYSTEM_COMMANDS } from '@stack/contracts';

import { connectNatsBus } from '../src/nats-bus';

async function main(): Promise<void> {
  const conn = await connectNatsBus({
    servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
    prefix: process.env.STACK_BUS_PREFIX ?? 'stack',
    internalSecret: Buffer.from(process.env.STACK_INTERNAL_SECRET ?? '', 'base64'),
    timeoutMs: 2000,
    instanceId: `fixture-${process.pid}`,
  });
  conn.forService('audit').handle(SYSTEM_COMMANDS.audit.ping, () => ({ service: 'audit' as const, instance: `fixture-${process.pid}`, pid: process.pid, at: new Date().toISOString() }));
  await conn.flush();
  process.stdout.write('READY\n');
  const stop = async () => {
    await conn.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

void main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
