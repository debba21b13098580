/**
 * Writing events through the transactional outbox: the event row is inserted with the same
 * EntityManager (so in the same transaction) as the data it describes, so it exists exactly
 * when that data committed. OutboxRelay publishes it afterwards.
 */
import { randomUUID } from 'node:crypto';

import { context, propagation } from '@opentelemetry/api';
import { assertValid } from '@stack/bus';
import { MAX_BUS_PAYLOAD_BYTES, StackError, type EventDef, type PayloadOf } from '@stack/contracts';
import { DataSource, type EntityManager } from 'typeorm';

import { markOutboxWritten, nudgeRelayOf } from './outbox-nudge';
import { qualifiedTable, runStatement, schemaOf } from './sql';

/** An event must fit on the bus (well under NATS' 1 MB message limit). */
export const MAX_OUTBOX_PAYLOAD_BYTES = MAX_BUS_PAYLOAD_BYTES;

export interface EnqueueOptions {
  /** The event id; a random UUID by default. Reuse a stable id to make a retried write recognisable. */
  id?: string;
  /** W3C trace context to publish with; by default the active OpenTelemetry context's. */
  traceparent?: string;
}

/** `entity.verb`: how an event is named in the outbox's `event` column. */
export function eventKey(event: Pick<EventDef, 'entity' | 'verb'>): string {
  return `${event.entity}.${event.verb}`;
}

/** One outbox row, validated and serialised, ready to insert. */
export interface OutboxEventRow {
  id: string;
  event: string;
  payload: string;
  headers: string;
}

/** Validates an event's payload (StackError INVALID_REQUEST / PAYLOAD_TOO_LARGE) and makes its outbox row. */
function row<E extends EventDef>(event: E, payload: PayloadOf<E>, options: EnqueueOptions = {}): OutboxEventRow {
  const key = eventKey(event);
  assertValid(event.payload, payload, `event ${key}`);
  const json = JSON.stringify(payload);
  // UTF-8 needs at most 3 bytes per UTF-16 unit: count the bytes only when the limit is within reach.
  if (json.length > MAX_OUTBOX_PAYLOAD_BYTES / 3 && Buffer.byteLength(json) > MAX_OUTBOX_PAYLOAD_BYTES) {
    throw new StackError('PAYLOAD_TOO_LARGE', `event ${key}: payload exceeds ${MAX_OUTBOX_PAYLOAD_BYTES} bytes`);
  }
  const headers: Record<string, string> = {};
  if (options.traceparent) {
    headers.traceparent = options.traceparent;
  } else {
    propagation.inject(context.active(), headers);
  }
  return { id: options.id ?? randomUUID(), event: key, payload: json, headers: JSON.stringify(headers) };
}

async function enqueue<E extends EventDef>(manager: EntityManager, event: E, payload: PayloadOf<E>, options: EnqueueOptions = {}): Promise<string> {
  if (!manager.queryRunner?.isTransactionActive) {
    // Outside a transaction the row would commit on its own, whatever happens to the data.
    throw new Error(`Outbox.enqueue(${eventKey(event)}) must be called with the EntityManager of an open transaction`);
  }
  const r = row(event, payload, options);
  await manager.query(`INSERT INTO ${qualifiedTable(schemaOf(manager), 'outbox')} (id, event, payload, headers) VALUES ($1, $2, $3::jsonb, $4::jsonb)`, [r.id, r.event, r.payload, r.headers]);
  // Its commit wakes the relay (OutboxCommitSubscriber), so the event need not wait for the relay's interval.
  markOutboxWritten(manager.queryRunner);
  return r.id;
}

/**
 * Runs one data-changing statement (`INSERT … RETURNING`, `UPDATE … RETURNING`) and inserts
 * `rows` into the outbox of the same schema in the same statement — so in one implicit
 * transaction and one round trip — but only when the statement returned a row: a guarded
 * UPDATE that matched nothing writes no event. Returns the statement's rows. Given a data source
 * (not a transaction's manager), it then nudges that data source's running relay.
 *
 * `sql` may use $1…$n for `params`; it must not end with a semicolon.
 */
async function withEvents<Row>(on: DataSource | EntityManager, sql: string, params: unknown[], rows: readonly OutboxEventRow[]): Promise<Row[]> {
  if (rows.length === 0) return (await runStatement<Row>(on, sql, params)).rows;
  const schema = schemaOf(on);
  const n = params.length;
  // One scalar parameter per value, not one array per column: a JSON payload inside a text[]
  // literal is escaped by the client and unescaped by the server, ~20 µs a row on the embedded one.
  const values = rows.map((_, i) => `($${n + 4 * i + 1}::text, $${n + 4 * i + 2}::text, $${n + 4 * i + 3}::jsonb, $${n + 4 * i + 4}::jsonb)`).join(', ');
  const statement =
    `WITH changed AS (${sql}), ` +
    `outboxed AS (INSERT INTO ${qualifiedTable(schema, 'outbox')} (id, event, payload, headers) ` +
    `SELECT e.id, e.event, e.payload, e.headers FROM (VALUES ${values}) AS e(id, event, payload, headers) ` +
    `WHERE EXISTS (SELECT 1 FROM changed)) ` +
    `SELECT * FROM changed`;
  const result = await runStatement<Row>(on, statement, [...params, ...rows.flatMap((r) => [r.id, r.event, r.payload, r.headers])]);
  if (result.rows.length > 0) {
    // Inside a transaction its commit wakes the relay (as for enqueue); on its own the statement has committed.
    if (!(on instanceof DataSource) && on.queryRunner?.isTransactionActive) markOutboxWritten(on.queryRunner);
    else nudgeRelayOf(on instanceof DataSource ? on : on.connection);
  }
  return result.rows;
}

export const Outbox = {
  /**
   * Inserts an event into the outbox of the manager's data source, inside the caller's
   * transaction. Validates the payload against the event's schema (StackError INVALID_REQUEST)
   * and returns the event id. The transaction's commit wakes the relay (OutboxCommitSubscriber),
   * which publishes it within its nudge delay (50 ms by default).
   */
  enqueue,
  /** An event's outbox row (validated), for `withEvents`. */
  row,
  /**
   * A data change and its events (audit entries included) in one statement: the outbox rows
   * are written only if the change returned a row. No explicit transaction needed.
   */
  withEvents,
} as const;
