import { SERVICE_SCHEMAS, StackError, type ServiceName } from '@stack/contracts';
import { createTestDatabase, type TestDatabase } from '@stack/testing';
import { Client } from 'pg';
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { migrateUnderLock, migrationLockKey, pendingMigrations, waitForSchema } from './migrations';
import { createServiceDataSource, type MigrationClass, type ServiceDataSource } from './service-data-source';
import { qualifiedTable, schemaOf } from './sql';
import { startTestEmbeddedPostgres, type TestEmbeddedPostgres } from './testing/embedded-postgres.test-helper';

/** A service migration as services write them: explicit SQL, schema-qualified. Slow on purpose, to widen any race. */
class Widgets1764000000100 implements MigrationInterface {
  readonly name = 'Widgets1764000000100';
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('SELECT pg_sleep(0.2)');
    await queryRunner.query(`CREATE TABLE ${qualifiedTable(schemaOf(queryRunner), 'widgets')} (id text PRIMARY KEY)`);
  }
  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE ${qualifiedTable(schemaOf(queryRunner), 'widgets')}`);
  }
}

class Gadgets1764000000200 implements MigrationInterface {
  readonly name = 'Gadgets1764000000200';
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE TABLE ${qualifiedTable(schemaOf(queryRunner), 'gadgets')} (id text PRIMARY KEY)`);
  }
  async down(): Promise<void> {}
}

const ALL = ['StackFoundation1764000000000', 'Widgets1764000000100'];

async function open(url: string, service: ServiceName, migrations: MigrationClass[] = [Widgets1764000000100]): Promise<ServiceDataSource> {
  const ds = createServiceDataSource({ service, url, entities: [], migrations, poolSize: 2 });
  await ds.initialize();
  return ds;
}

async function tablesOf(ds: ServiceDataSource): Promise<{ table_schema: string; table_name: string }[]> {
  return ds.query(
    `SELECT table_schema, table_name FROM information_schema.tables
      WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_schema, table_name`,
  );
}

async function appliedNames(ds: ServiceDataSource): Promise<string[]> {
  const rows = (await ds.query(`SELECT name FROM ${qualifiedTable(ds.schema, 'migrations')} ORDER BY id`)) as { name: string }[];
  return rows.map((r) => r.name);
}

/** The same checks on a real server and on the embedded one. */
function migrationSuite(target: () => string) {
  it('applies the foundation and the service migrations in the service schema, once', async () => {
    const ds = await open(target(), 'audit');
    try {
      expect(await pendingMigrations(ds)).toEqual(ALL);
      expect(await migrateUnderLock(ds)).toEqual(ALL);
      const tables = await tablesOf(ds);
      expect(tables.filter((t) => t.table_schema === 'audit').map((t) => t.table_name)).toEqual(['inbox', 'migrations', 'outbox', 'widgets']);
      // Nothing leaked into public (the migrations table included).
      expect(tables.filter((t) => t.table_schema === 'public')).toEqual([]);
      const indexes = (await ds.query(`SELECT indexname FROM pg_indexes WHERE schemaname = 'audit' AND tablename = 'outbox' ORDER BY indexname`)) as { indexname: string }[];
      expect(indexes.map((i) => i.indexname)).toEqual(expect.arrayContaining(['outbox_unsent_seq_idx', 'outbox_sent_at_idx']));

      expect(await migrateUnderLock(ds)).toEqual([]);
      expect(await appliedNames(ds)).toEqual(ALL);
      await expect(waitForSchema(ds, { timeoutMs: 1000 })).resolves.toBeUndefined();
    } finally {
      await ds.destroy();
    }
  });

  it('never races: two data sources migrating the same fresh schema at once apply each migration exactly once', async () => {
    const [a, b] = await Promise.all([open(target(), 'passport'), open(target(), 'passport')]);
    try {
      const results = await Promise.all([migrateUnderLock(a), migrateUnderLock(b)]);
      // One did the work, the other found it done.
      expect(results.map((r) => r.length).sort()).toEqual([0, ALL.length]);
      expect(results.flat()).toEqual(ALL);
      expect(await appliedNames(a)).toEqual(ALL);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });

  it('lets a service wait for the migration job, and fails naming the schema and what is pending', async () => {
    const migrator = await open(target(), 'skill-runner');
    const waiter = await open(target(), 'skill-runner', [Widgets1764000000100, Gadgets1764000000200]);
    try {
      const waited = waitForSchema(waiter, { timeoutMs: 10_000, intervalMs: 50 });
      await migrateUnderLock(migrator);
      // Widgets done, Gadgets (only the waiter knows it) still pending.
      const err = await waitForSchema(waiter, { timeoutMs: 200, intervalMs: 50 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StackError);
      expect((err as StackError).code).toBe('SERVICE_UNAVAILABLE');
      expect((err as StackError).message).toMatch(/schema "skill_runner".*Gadgets1764000000200/);
      expect((err as StackError).message).not.toMatch(/Widgets1764000000100/);
      await migrateUnderLock(waiter);
      await expect(waited).resolves.toBeUndefined();
    } finally {
      await Promise.all([migrator.destroy(), waiter.destroy()]);
    }
  });
}

describe('migrations on the real Postgres', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase('stack_persist_mig');
  });

  afterAll(async () => {
    await db?.drop();
  });

  migrationSuite(() => db.url);

  it('waits for the schema advisory lock held by another session (another process)', async () => {
    const other = new Client({ connectionString: db.url });
    await other.connect();
    const ds = await open(db.url, 'credential-proxy');
    try {
      await other.query('SELECT pg_advisory_lock($1::bigint)', [migrationLockKey(SERVICE_SCHEMAS['credential-proxy'])]);
      let done = false;
      const migrating = migrateUnderLock(ds).then((applied) => {
        done = true;
        return applied;
      });
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(done).toBe(false);
      expect(await pendingMigrations(ds)).toEqual(ALL);
      await other.query('SELECT pg_advisory_unlock($1::bigint)', [migrationLockKey(SERVICE_SCHEMAS['credential-proxy'])]);
      expect(await migrating).toEqual(ALL);
    } finally {
      await other.end();
      await ds.destroy();
    }
  });
});

describe('migrations on the embedded Postgres', () => {
  let pg: TestEmbeddedPostgres;

  beforeAll(async () => {
    pg = await startTestEmbeddedPostgres();
  });

  afterAll(async () => {
    await pg?.dispose();
  });

  migrationSuite(() => pg.url);
});
