/**
 * Applying a service's migrations so that replicas, a Kubernetes Job and the one-process mode
 * can all start at once without racing, and waiting for them where a service does not apply
 * its own.
 *
 * The lock is a Postgres session advisory lock with a key fixed by the schema name, taken on
 * one dedicated connection that also runs the migrations (each in its own transaction).
 * PGlite has a single session shared by every connection, where an advisory lock is
 * re-entrant and excludes nobody; there a lock inside this process does the work instead
 * (PGlite only ever lives inside one process).
 */
import { createHash } from 'node:crypto';

import { StackError } from '@stack/contracts';
import { MigrationExecutor, type DataSource, type QueryRunner } from 'typeorm';

import { SILENT_LOGGER, errorMessage, type PersistenceLogger } from './persistence-logger';
import { MIGRATIONS_TABLE } from './service-data-source';
import { qualifiedTable, quoteIdent, schemaOf } from './sql';

/** The advisory lock key (a signed 64-bit integer, as a decimal string) guarding a schema's migrations. */
export function migrationLockKey(schema: string): string {
  return createHash('sha256').update(`stack:migrations:${schema}`).digest().readBigInt64BE(0).toString();
}

export interface MigrateOptions {
  logger?: PersistenceLogger;
}

/**
 * Creates the data source's schema if needed and applies its pending migrations under the
 * schema's advisory lock. Returns the names of the migrations this call applied (empty when
 * another caller got there first). The data source must be initialized.
 */
export async function migrateUnderLock(dataSource: DataSource, options: MigrateOptions = {}): Promise<string[]> {
  const logger = options.logger ?? SILENT_LOGGER;
  const schema = schemaOf(dataSource);
  const key = migrationLockKey(schema);
  const runner = dataSource.createQueryRunner('master');
  await runner.connect();
  try {
    const embedded = await isPglite(runner);
    const migrate = async (): Promise<string[]> => {
      const started = Date.now();
      await runner.query('SELECT pg_advisory_lock($1::bigint)', [key]);
      try {
        logger.debug({ schema, waitedMs: Date.now() - started }, 'migration lock taken');
        // Under the lock, so two first starts cannot both try to create it. Checked first so a
        // role without CREATE on the database can still migrate a schema made for it.
        const exists = await runner.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        if (exists.length === 0) await runner.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
        const executor = new MigrationExecutor(dataSource, runner);
        executor.transaction = 'each';
        const applied = (await executor.executePendingMigrations()).map((m) => m.name);
        if (applied.length > 0) logger.info({ schema, applied }, 'migrations applied');
        else logger.debug({ schema }, 'schema already current');
        return applied;
      } finally {
        await runner.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
      }
    };
    return embedded ? await inProcessLock(`${dataSourceAddress(dataSource)}|${schema}`, migrate) : await migrate();
  } finally {
    await runner.release();
  }
}

export interface WaitForSchemaOptions {
  timeoutMs: number;
  /** Between checks; default 500 ms. */
  intervalMs?: number;
  logger?: PersistenceLogger;
}

/**
 * For a service whose migrations a Job applies: resolves once none of the data source's
 * migrations is pending; after `timeoutMs` fails with SERVICE_UNAVAILABLE naming the schema
 * and what is still pending. Migrations recorded in the database but unknown to this code
 * (a newer release's) are fine: that is a rolling upgrade.
 */
export async function waitForSchema(dataSource: DataSource, options: WaitForSchemaOptions): Promise<void> {
  const schema = schemaOf(dataSource);
  const intervalMs = options.intervalMs ?? 500;
  const deadline = Date.now() + options.timeoutMs;
  let pending: string[] = [];
  let lastError: unknown;
  let logged = false;
  for (;;) {
    try {
      pending = await pendingMigrations(dataSource);
      lastError = undefined;
      if (pending.length === 0) return;
      if (!logged) {
        options.logger?.info({ schema, pending }, 'waiting for the migration job');
        logged = true;
      }
    } catch (err) {
      lastError = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const why = lastError
        ? `its migrations could not be read (${errorMessage(lastError)})`
        : `pending migrations: ${pending.join(', ')}`;
      throw new StackError('SERVICE_UNAVAILABLE', `schema "${schema}" is not current after ${options.timeoutMs} ms; ${why}. Run this service's migrations (migrateUnderLock, the migration Job) first.`, {
        schema,
        pending,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, left)));
  }
}

/** Names of the data source's migrations not yet recorded in its schema's migrations table, in order. */
export async function pendingMigrations(dataSource: DataSource): Promise<string[]> {
  const schema = schemaOf(dataSource);
  const table = qualifiedTable(schema, MIGRATIONS_TABLE);
  const known = dataSource.migrations.map((m) => m.name ?? m.constructor.name);
  const [{ present }] = (await dataSource.query('SELECT to_regclass($1) IS NOT NULL AS present', [table])) as [{ present: boolean }];
  if (!present) return known;
  const rows = (await dataSource.query(`SELECT name FROM ${table}`)) as { name: string }[];
  const applied = new Set(rows.map((r) => r.name));
  return known.filter((name) => !applied.has(name));
}

async function isPglite(runner: QueryRunner): Promise<boolean> {
  const [{ version }] = (await runner.query('SELECT version() AS version')) as [{ version: string }];
  return version.includes('PGlite');
}

function dataSourceAddress(dataSource: DataSource): string {
  const options = dataSource.options;
  return 'url' in options && typeof options.url === 'string' ? options.url : '';
}

const locks = new Map<string, Promise<unknown>>();

/** Runs `fn` after every earlier call with the same key has settled. */
async function inProcessLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = locks.get(key) ?? Promise.resolve();
  const run = previous.then(fn, fn);
  const settled = run.then(
    () => undefined,
    () => undefined,
  );
  locks.set(key, settled);
  try {
    return await run;
  } finally {
    if (locks.get(key) === settled) locks.delete(key);
  }
}
