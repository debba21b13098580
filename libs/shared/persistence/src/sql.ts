/**
 * Raw SQL helpers. Every statement this library (and a service's migrations) writes names its
 * tables with the data source's schema, quoted, because TypeORM does not rewrite raw SQL.
 */
import { DataSource, type EntityManager } from 'typeorm';

interface WithOptions {
  options: DataSource['options'];
}

/**
 * The Postgres schema a data source (or a query runner's or entity manager's data source)
 * works in. Migrations and raw SQL use it to qualify every table name.
 */
export function schemaOf(source: DataSource | { connection: WithOptions }): string {
  const options = 'connection' in source ? source.connection.options : source.options;
  const schema = 'schema' in options ? options.schema : undefined;
  if (typeof schema !== 'string' || schema === '') {
    throw new Error('this data source has no Postgres schema; create it with createServiceDataSource');
  }
  return schema;
}

/** A double-quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `"schema"."table"`. */
export function qualifiedTable(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

export interface StatementResult<Row> {
  rows: Row[];
  /** Rows inserted, updated or deleted. */
  affected: number;
}

/**
 * Runs one statement on its own (autocommit) or on a manager's transaction, with a uniform
 * result: TypeORM's plain `query()` returns `[rows, count]` for UPDATE and DELETE but bare
 * rows for everything else.
 */
export async function runStatement<Row = Record<string, unknown>>(
  on: DataSource | EntityManager,
  sql: string,
  parameters: unknown[] = [],
): Promise<StatementResult<Row>> {
  const own = on instanceof DataSource ? undefined : on.queryRunner;
  const runner = own ?? (on instanceof DataSource ? on : on.connection).createQueryRunner();
  try {
    const result = await runner.query(sql, parameters, true);
    return { rows: (result.records ?? []) as Row[], affected: result.affected ?? result.records?.length ?? 0 };
  } finally {
    if (!own) await runner.release();
  }
}
