/**
 * The MCP gateway (with audit) on the real Postgres, NATS and Redis, under a fresh database and
 * bus prefix, and a second bus connection that stands in for the services its tools call: the
 * int-specs register on it the handlers they need. `stop()` undoes all of it.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type BusConnection } from '@stack/bus';
import { startStack, type RunningStack, type ServiceDefinition } from '@stack/runtime';
import { TEST_NATS_URL, TEST_REDIS_URL, createTestDatabase, uniqueName, type TestDatabase } from '@stack/testing';

export interface GatewayWithStandIns {
  stack: RunningStack;
  db: TestDatabase;
  standIn: BusConnection;
  stop(): Promise<void>;
}

export async function startGatewayWithStandIns(options: {
  /** The gateway and audit definitions (the specs give the gateway their own token verifier). */
  available: ServiceDefinition[];
  /** Prefix of the run's bus names (uniqueName adds the rest). */
  name: string;
  /** STACK_MCP_RATE_LIMIT. */
  rateLimit: string;
  logLevel: string;
  standInId: string;
}): Promise<GatewayWithStandIns> {
  let db: TestDatabase | undefined;
  let stack: RunningStack | undefined;
  let standIn: BusConnection | undefined;
  const stop = async () => {
    await standIn?.close();
    await stack?.stop();
    await db?.drop();
  };
  try {
    db = await createTestDatabase();
    const prefix = uniqueName(options.name);
    const internalSecret = randomBytes(32).toString('base64');
    stack = await startStack({
      available: options.available,
      env: {
        STACK_SERVICES: 'mcp-gateway,audit',
        DATABASE_URL: db.url,
        NATS_URL: TEST_NATS_URL,
        REDIS_URL: TEST_REDIS_URL,
        STACK_BUS_PREFIX: prefix,
        STACK_INTERNAL_SECRET: internalSecret,
        STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
        STACK_MCP_RATE_LIMIT: options.rateLimit,
        PORT: '0',
        LOG_LEVEL: options.logLevel,
      },
    });
    standIn = await connectNatsBus({ servers: TEST_NATS_URL, prefix, internalSecret: Buffer.from(internalSecret, 'base64'), timeoutMs: 5000, instanceId: options.standInId });
    return { stack, db, standIn, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
