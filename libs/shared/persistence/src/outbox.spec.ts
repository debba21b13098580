import { context, propagation, trace } from '@opentelemetry/api';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { AuditRecordedEvent, ServiceStartedEvent, StackError } from '@stack/contracts';
import type { EntityManager } from 'typeorm';

import { MAX_OUTBOX_PAYLOAD_BYTES, Outbox, eventKey } from './outbox';

/** Just what enqueue touches of an EntityManager: its data source's schema, its transaction, query(). */
function fakeManager(inTransaction = true): { manager: EntityManager; queries: { sql: string; params: unknown[] }[] } {
  const queries: { sql: string; params: unknown[] }[] = [];
  const manager = {
    connection: { options: { type: 'postgres', schema: 'passport' } },
    queryRunner: { isTransactionActive: inTransaction },
    query: async (sql: string, params: unknown[]) => {
      queries.push({ sql, params });
      return [];
    },
  } as unknown as EntityManager;
  return { manager, queries };
}

const started = { service: 'passport' as const, instance: 'i-1', version: '0.1.0', started_at: '2025-11-25T10:00:00.000Z' };

describe('Outbox.enqueue', () => {
  afterEach(() => {
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it('inserts into the schema-qualified outbox with the event key, payload and the given id', async () => {
    const { manager, queries } = fakeManager();
    const id = await Outbox.enqueue(manager, ServiceStartedEvent, started, { id: 'evt-1', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    expect(id).toBe('evt-1');
    expect(queries).toHaveLength(1);
    expect(queries[0]!.sql).toContain('INSERT INTO "passport"."outbox"');
    expect(queries[0]!.params).toEqual(['evt-1', 'service.started', JSON.stringify(started), JSON.stringify({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })]);
  });

  it('generates a UUID and takes the trace context of the active span when none is given', async () => {
    // Registers the W3C propagator and an AsyncLocalStorage context manager, as the services do.
    new NodeTracerProvider().register();
    const { manager, queries } = fakeManager();
    const { id, traceId, spanId } = await trace.getTracer('test').startActiveSpan('request', async (span) => {
      const id = await Outbox.enqueue(manager, ServiceStartedEvent, started);
      span.end();
      return { id, ...span.spanContext() };
    });
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(JSON.parse(queries[0]!.params[3] as string)).toEqual({ traceparent: `00-${traceId}-${spanId}-01` });
  });

  it('refuses a payload that does not match the event schema, before writing anything', async () => {
    const { manager, queries } = fakeManager();
    const bad = { ...started, started_at: 'yesterday', service: 'nope' } as unknown as typeof started;
    const err = await Outbox.enqueue(manager, ServiceStartedEvent, bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StackError);
    expect((err as StackError).code).toBe('INVALID_REQUEST');
    const pointers = ((err as StackError).details?.errors as { pointer: string }[]).map((e) => e.pointer);
    expect(pointers).toEqual(expect.arrayContaining(['/started_at', '/service']));
    expect(queries).toHaveLength(0);
  });

  it('refuses a payload too large for the bus', async () => {
    const { manager, queries } = fakeManager();
    const huge = { id: 'aud_1', occurred_at: '2025-11-25T10:00:00.000Z', layer: 'system' as const, action: 'x'.repeat(MAX_OUTBOX_PAYLOAD_BYTES), outcome: 'success' as const };
    await expect(Outbox.enqueue(manager, AuditRecordedEvent, huge)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    expect(queries).toHaveLength(0);
  });

  it('refuses a manager outside a transaction, where the row would not share the data commit', async () => {
    const { manager, queries } = fakeManager(false);
    await expect(Outbox.enqueue(manager, ServiceStartedEvent, started)).rejects.toThrow(/open transaction/);
    expect(queries).toHaveLength(0);
  });

  it('names events entity.verb', () => {
    expect(eventKey(AuditRecordedEvent)).toBe('audit.recorded');
  });
});
