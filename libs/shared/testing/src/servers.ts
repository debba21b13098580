/**
 * Where the machine's shared servers are, and per-run isolation on them: every test run
 * gets its own database, bus prefix and stream names, so runs never see each other's leftovers.
 */
import { randomBytes } from 'node:crypto';

import { connect } from 'nats';
import { Client } from 'pg';
import { createClient } from 'redis';

import { STREAM_BASES, streamName } from '@stack/contracts';

export const TEST_POSTGRES_URL = process.env.STACK_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_NATS_URL = process.env.STACK_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
export const TEST_REDIS_URL = process.env.STACK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Every name uniqueName made since takeUniqueNames last ran. */
const madeNames: string[] = [];

/** A short random name usable as a database name, bus prefix or key prefix. */
export function uniqueName(prefix = 't'): string {
  const name = `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  madeNames.push(name);
  return name;
}

/**
 * The names uniqueName made since the last call (and forgets them): after a test file, the
 * JetStream streams and Redis keys made under them are deleted (tools/jest/drop-leftovers.ts).
 */
export function takeUniqueNames(): string[] {
  return madeNames.splice(0);
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

/**
 * Deletes the JetStream streams (and with them their consumers) runs made under the bus prefixes
 * `prefixes`: each prefix is a run's own, so no other run's streams are touched. Streams that were
 * never made are skipped. Resolves to how many were deleted.
 */
export async function dropBusStreams(prefixes: string | readonly string[], natsUrl = TEST_NATS_URL): Promise<number> {
  const nc = await connect({ servers: natsUrl, timeout: 5000 });
  try {
    const jsm = await nc.jetstreamManager();
    let deleted = 0;
    for (const prefix of typeof prefixes === 'string' ? [prefixes] : prefixes) {
      for (const base of STREAM_BASES) {
        if (await jsm.streams.delete(streamName(prefix, base)).catch(() => false)) deleted++;
      }
    }
    return deleted;
  } finally {
    await nc.close();
  }
}

/**
 * Deletes the Redis keys runs made under the names `prefixes` (keys `<name>:…`, as STACK's cache
 * prefixes them): each name is a run's own, so no other run's keys are touched. Resolves to how
 * many were deleted.
 */
export async function dropCacheKeys(prefixes: readonly string[], redisUrl = TEST_REDIS_URL): Promise<number> {
  const client = createClient({ url: redisUrl, socket: { connectTimeout: 5000, reconnectStrategy: false } });
  await client.connect();
  try {
    let deleted = 0;
    // Only plain names: nothing in them may be read as a glob.
    for (const prefix of prefixes.filter((p) => /^[A-Za-z0-9_.-]+$/.test(p))) {
      for await (const keys of client.scanIterator({ MATCH: `${prefix}:*`, COUNT: 1000 })) {
        if (keys.length > 0) deleted += await client.del(keys);
      }
    }
    return deleted;
  } finally {
    await client.quit().catch(() => undefined);
  }
}
