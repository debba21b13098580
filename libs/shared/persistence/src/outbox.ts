/**
 * Writing events through the transactional outbox: the event row is inserted with the same
 * EntityManager (so in the same transaction) as the data it describes, so it exists exactly
 * when that data committed. OutboxRelay publishes it afterwards.
 */
import { randomUUID } from 'node:crypto';

import { context, propagation } from '@opentelemetry/api';
import { assertValid } from '@stack/bus';
import { MAX_BUS_PAYLOAD_BYTES, StackError, type EventDef, type PayloadOf } from '@stack/contracts';
import type { EntityManager } from 'typeorm';

import { qualifiedTable, schemaOf } from './sql';

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

async function enqueue<E extends EventDef>(manager: EntityManager, event: E, payload: PayloadOf<E>, options: EnqueueOptions = {}): Promise<string> {
  if (!manager.queryRunner?.isTransactionActive) {
    // Outside a transaction the row would commit on its own, whatever happens to the data.
    throw new Error(`Outbox.enqueue(${eventKey(event)}) must be called with the EntityManager of an open transaction`);
  }
  const key = eventKey(event);
  assertValid(event.payload, payload, `event ${key}`);
  const json = JSON.stringify(payload);
  if (Buffer.byteLength(json) > MAX_OUTBOX_PAYLOAD_BYTES) {
    throw new StackError('PAYLOAD_TOO_LARGE', `event ${key}: payload exceeds ${MAX_OUTBOX_PAYLOAD_BYTES} bytes`);
  }
  const headers: Record<string, string> = {};
  if (options.traceparent) {
    headers.traceparent = options.traceparent;
  } else {
    propagation.inject(context.active(), headers);
  }
  const id = options.id ?? randomUUID();
  await manager.query(`INSERT INTO ${qualifiedTable(schemaOf(manager), 'outbox')} (id, event, payload, headers) VALUES ($1, $2, $3::jsonb, $4::jsonb)`, [
    id,
    key,
    json,
    JSON.stringify(headers),
  ]);
  return id;
}

export const Outbox = {
  /**
   * Inserts an event into the outbox of the manager's data source, inside the caller's
   * transaction. Validates the payload against the event's schema (StackError INVALID_REQUEST)
   * and returns the event id. Call OutboxRelay.notify() after the commit to publish at once.
   */
  enqueue,
} as const;
