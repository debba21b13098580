/**
 * The passport service alone on the real Postgres and NATS, for its integration tests: its own
 * database and bus prefix, started as the runtime starts it, used once ready (as a load balancer
 * would), and a bus connection that speaks as the MCP gateway.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type Bus, type BusConnection } from '@stack/bus';
import { startStack, type RunningStack } from '@stack/runtime';
import { TEST_NATS_URL, TEST_REDIS_URL, createTestDatabase, uniqueName } from '@stack/testing';

import { passportService } from '../index';

export interface PassportUnderTest {
  stack: RunningStack;
  /** The bus as the MCP gateway sees it. */
  gateway: Bus;
  client: BusConnection;
  stop(): Promise<void>;
}

export async function startPassportUnderTest(options: { name: string; env?: Record<string, string>; busTimeoutMs?: number }): Promise<PassportUnderTest> {
  const db = await createTestDatabase(`stack_${options.name}`);
  const prefix = uniqueName(options.name);
  const secret = randomBytes(32);
  let stack: RunningStack | undefined;
  let client: BusConnection | undefined;
  const stop = async () => {
    await client?.close();
    await stack?.stop();
    await db.drop();
  };
  try {
    stack = await startStack({
      available: [passportService],
      env: {
        STACK_SERVICES: 'passport',
        DATABASE_URL: db.url,
        NATS_URL: TEST_NATS_URL,
        REDIS_URL: TEST_REDIS_URL,
        STACK_BUS_PREFIX: prefix,
        STACK_INTERNAL_SECRET: secret.toString('base64'),
        STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
        STACK_PUBLIC_URL: 'http://stack.test',
        PORT: '0',
        LOG_LEVEL: 'warn',
        ...options.env,
      },
    });
    for (let i = 0; i < 150 && (await fetch(`${stack.url}/readyz`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    client = await connectNatsBus({ servers: TEST_NATS_URL, prefix, internalSecret: secret, timeoutMs: options.busTimeoutMs ?? 5000, instanceId: 'gateway' });
    return { stack, gateway: client.forService('mcp-gateway'), client, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
