/**
 * One event waiting in (or already through) a service's transactional outbox. Written in the
 * same transaction as the data it describes (see Outbox.enqueue), published by OutboxRelay.
 * Columns are created by the foundation migration; the entity carries no schema, so each
 * data source maps it into its own.
 */
import { Column, Entity, PrimaryColumn } from 'typeorm';

@Entity({ name: 'outbox' })
export class OutboxMessage {
  /** The event id (a UUID unless the caller chose one); JetStream and consumers deduplicate by it. */
  @PrimaryColumn({ type: 'text' })
  id!: string;

  /** Insertion order (bigserial); the relay publishes in this order. A string: bigint exceeds a JS number. */
  @Column({ type: 'bigint', insert: false, update: false })
  seq!: string;

  /** `entity.verb` of the event definition, e.g. `revocation.recorded`. */
  @Column({ type: 'text' })
  event!: string;

  @Column({ type: 'jsonb' })
  payload!: unknown;

  /** Message headers to restore at publish time (W3C `traceparent`, `tracestate`). */
  @Column({ type: 'jsonb' })
  headers!: Record<string, string>;

  @Column({ name: 'created_at', type: 'timestamptz', insert: false, update: false })
  createdAt!: Date;

  /** Null until the stream acknowledged it. */
  @Column({ name: 'sent_at', type: 'timestamptz', nullable: true })
  sentAt!: Date | null;

  /** Set when the bus refused the event for good (it never will be published); kept for an operator to inspect. */
  @Column({ name: 'failed_at', type: 'timestamptz', nullable: true })
  failedAt!: Date | null;

  @Column({ name: 'last_error', type: 'text', nullable: true })
  lastError!: string | null;
}
