// The persistence library: per-service TypeORM data sources, migrations under an advisory
// lock, the embedded Postgres of the one-process mode, the transactional outbox and its
// relay, and idempotent consumers.
export { createServiceDataSource, ServiceDataSource, MIGRATIONS_TABLE, type ServiceDataSourceOptions, type EntityDefinition, type MigrationClass } from './service-data-source';
export { schemaOf, quoteIdent, qualifiedTable, runStatement, type StatementResult } from './sql';
export { StackFoundation1764000000000 } from './foundation.migration';
export { migrateUnderLock, waitForSchema, pendingMigrations, migrationLockKey, type MigrateOptions, type WaitForSchemaOptions } from './migrations';
export { startEmbeddedPostgres, inProcessStream, type EmbeddedPostgres, type EmbeddedPostgresOptions } from './embedded-postgres';
export { InProcessSocket } from './in-process-socket';
export { OutboxMessage } from './outbox-message.entity';
export { InboxMessage } from './inbox-message.entity';
export { Outbox, eventKey, MAX_OUTBOX_PAYLOAD_BYTES, type EnqueueOptions, type OutboxEventRow } from './outbox';
export { OutboxRelay, type OutboxRelayOptions } from './outbox-relay';
export { claimMessage, pruneInbox, type PruneInboxOptions } from './inbox';
export { SILENT_LOGGER, errorMessage, type PersistenceLogger } from './persistence-logger';
