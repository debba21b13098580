/**
 * Which relay publishes a data source's outbox in this process, so a writer that has just
 * committed events can wake it instead of leaving them to its next interval: Outbox.withEvents
 * after its statement, and a transaction that called Outbox.enqueue once it commits (through
 * OutboxCommitSubscriber, registered on every service data source).
 */
import { EventSubscriber, type DataSource, type EntitySubscriberInterface, type QueryRunner, type TransactionCommitEvent, type TransactionRollbackEvent } from 'typeorm';

interface Nudgeable {
  nudge(): void;
}

const RUNNING = new WeakMap<DataSource, Nudgeable>();

export function setRunningRelay(dataSource: DataSource, relay: Nudgeable): void {
  RUNNING.set(dataSource, relay);
}

export function clearRunningRelay(dataSource: DataSource, relay: Nudgeable): void {
  if (RUNNING.get(dataSource) === relay) RUNNING.delete(dataSource);
}

/** Wakes the relay publishing `dataSource`'s outbox, if one runs in this process. */
export function nudgeRelayOf(dataSource: DataSource): void {
  RUNNING.get(dataSource)?.nudge();
}

const WROTE = 'stackOutboxWritten';

/** Notes on a transaction's query runner that it wrote outbox rows (Outbox.enqueue). */
export function markOutboxWritten(queryRunner: QueryRunner): void {
  const data = (queryRunner.data ?? {}) as Record<string, unknown>;
  data[WROTE] = true;
  queryRunner.data = data;
}

/**
 * Wakes the relay once a transaction that wrote outbox rows has committed — the outermost
 * commit, not a savepoint's release, since only then can the relay see the rows. A rollback of
 * the whole transaction forgets the mark.
 */
@EventSubscriber()
export class OutboxCommitSubscriber implements EntitySubscriberInterface {
  afterTransactionCommit(event: TransactionCommitEvent): void {
    const data = event.queryRunner.data as Record<string, unknown> | undefined;
    if (!data?.[WROTE] || event.queryRunner.isTransactionActive) return;
    delete data[WROTE];
    nudgeRelayOf(event.connection);
  }

  afterTransactionRollback(event: TransactionRollbackEvent): void {
    const data = event.queryRunner.data as Record<string, unknown> | undefined;
    if (data?.[WROTE] && !event.queryRunner.isTransactionActive) delete data[WROTE];
  }
}
