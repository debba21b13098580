/**
 * Where the machine's shared servers are, and per-run isolation on them: every test run
 * gets its own database, bus prefix and stream names, so runs never see each other's leftovers.
 */
import { randomBytes } from 'node:crypto';

import { Client } from 'pg';

export const TEST_POSTGRES_URL = process.env.STACK_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_NATS_URL = process.env.STACK_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
export const TEST_REDIS_URL = process.env.STACK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A short random name usable as a database name, bus prefix or key prefix. */
export function uniqueName(prefix = 't'): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Creates a fresh database on the shared Postgres; `drop()` removes it (terminating leftover connections). */
export async function createTestDatabase(prefix = 'stack_test'): Promise<TestDatabase> {
  const name = uniqueName(prefix).toLowerCase();
  const admin = new Client({ connectionString: TEST_POSTGRES_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      const c = new Client({ connectionString: TEST_POSTGRES_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
