/**
 * One TypeORM data source per service: its own Postgres schema (SERVICE_SCHEMAS), its own
 * migrations and migrations table inside that schema, `synchronize` off. Every data source
 * also carries the outbox and inbox tables, created by the foundation migration.
 */
import { SERVICE_SCHEMAS, isServiceName, type ServiceName } from '@stack/contracts';
import { DataSource, type EntitySchema, type LoggerOptions, type MigrationInterface } from 'typeorm';

import { inProcessStream } from './embedded-postgres';
import { StackFoundation1764000000000 } from './foundation.migration';
import { InboxMessage } from './inbox-message.entity';
import { OutboxMessage } from './outbox-message.entity';
import { OutboxCommitSubscriber } from './outbox-nudge';

/** An entity class (decorated with @Entity) or an EntitySchema. */
export type EntityDefinition = (abstract new (...args: never[]) => object) | EntitySchema;

/** A migration class: TypeORM instantiates it with no arguments. Give it a `name` ending in a 13-digit timestamp. */
export type MigrationClass = new () => MigrationInterface;

export interface ServiceDataSourceOptions {
  service: ServiceName;
  /** DATABASE_URL, or the embedded server's URL. */
  url: string;
  entities: readonly EntityDefinition[];
  /** Run after the foundation migration, in timestamp order. */
  migrations: readonly MigrationClass[];
  /** Connections in this data source's pool. Default 5. */
  poolSize?: number;
  logging?: LoggerOptions;
}

/** The name of the table TypeORM records applied migrations in, inside the service's schema. */
export const MIGRATIONS_TABLE = 'migrations';

/** A DataSource that knows which service and schema it belongs to. TypeORM 1.x dropped `name`; we keep it. */
export class ServiceDataSource extends DataSource {
  readonly name: ServiceName;
  readonly service: ServiceName;
  readonly schema: string;

  constructor(service: ServiceName, options: ConstructorParameters<typeof DataSource>[0]) {
    super(options);
    this.name = service;
    this.service = service;
    this.schema = SERVICE_SCHEMAS[service];
  }
}

export function createServiceDataSource(options: ServiceDataSourceOptions): ServiceDataSource {
  const { service, url } = options;
  if (typeof service !== 'string' || !isServiceName(service)) {
    throw new Error(`createServiceDataSource: option 'service' must be one of the service names, got ${JSON.stringify(service)}`);
  }
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//.test(url)) {
    throw new Error(`createServiceDataSource(${service}): option 'url' must be a postgres:// URL`);
  }
  const poolSize = options.poolSize ?? 5;
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new Error(`createServiceDataSource(${service}): option 'poolSize' must be a positive integer, got ${String(options.poolSize)}`);
  }
  const stream = inProcessStream(url);
  return new ServiceDataSource(service, {
    type: 'postgres',
    url,
    schema: SERVICE_SCHEMAS[service],
    applicationName: `stack-${service}`,
    poolSize,
    entities: [OutboxMessage, InboxMessage, ...options.entities],
    subscribers: [OutboxCommitSubscriber],
    migrations: [StackFoundation1764000000000, ...options.migrations],
    migrationsTableName: MIGRATIONS_TABLE,
    migrationsTransactionMode: 'each',
    migrationsRun: false,
    synchronize: false,
    logging: options.logging ?? false,
    // The embedded server of this process: connect in memory rather than over loopback TCP.
    ...(stream ? { extra: { stream } } : {}),
  });
}
