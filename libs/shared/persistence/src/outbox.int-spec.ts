import { spawn } from 'node:child_process';
import { join } from 'node:path';

import { context, propagation, trace } from '@opentelemetry/api';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { AuditRecordedEvent, ServiceStartedEvent, StackError, type PayloadOf } from '@stack/contracts';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { claimMessage } from './inbox';
import { migrateUnderLock } from './migrations';
import { Outbox } from './outbox';
import { OutboxRelay } from './outbox-relay';
import { createServiceDataSource, type ServiceDataSource } from './service-data-source';
import { RecordingBus } from './testing/recording-bus.test-helper';
import { Orders1764000000300, waitUntil } from './testing/test-migrations.test-helper';

type Started = PayloadOf<typeof ServiceStartedEvent>;

function started(instance: string): Started {
  return { service: 'passport', instance, version: '0.1.0', started_at: new Date().toISOString() };
}

describe('transactional outbox and relay (real Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;
  const relays: OutboxRelay[] = [];

  function relay(bus: RecordingBus, options: Partial<ConstructorParameters<typeof OutboxRelay>[0]> = {}): OutboxRelay {
    const r = new OutboxRelay({ dataSource: ds, bus, intervalMs: 20, maxBackoffMs: 50, ...options });
    relays.push(r);
    return r;
  }

  /** Writes a data row and its event in one transaction, as a service does. */
  /** An outbox row written by plain SQL: nothing tells the relay. */
  async function writeBehindRelay(id: string): Promise<void> {
    const r = Outbox.row(ServiceStartedEvent, started(id), { id });
    await ds.query('INSERT INTO passport.outbox (id, event, payload, headers) VALUES ($1, $2, $3::jsonb, $4::jsonb)', [r.id, r.event, r.payload, r.headers]);
  }

  async function placeOrder(id: string, options: { rollback?: boolean } = {}): Promise<void> {
    await ds
      .transaction(async (manager) => {
        await manager.query('INSERT INTO passport.orders (id) VALUES ($1)', [id]);
        await Outbox.enqueue(manager, ServiceStartedEvent, started(id), { id });
        if (options.rollback) throw new Error('rolled back on purpose');
      })
      .catch((err: unknown) => {
        if (!options.rollback) throw err;
      });
  }

  async function outboxRows(): Promise<{ id: string; seq: string; event: string; sent: boolean; failed: boolean }[]> {
    return ds.query('SELECT id, seq, event, sent_at IS NOT NULL AS sent, failed_at IS NOT NULL AS failed FROM passport.outbox ORDER BY seq');
  }

  beforeAll(async () => {
    db = await createTestDatabase('stack_persist_outbox');
    ds = createServiceDataSource({ service: 'passport', url: db.url, entities: [], migrations: [Orders1764000000300] });
    await ds.initialize();
    await migrateUnderLock(ds);
  });

  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
    await ds.query('TRUNCATE passport.outbox, passport.orders, passport.inbox');
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it('withEvents: the change and its events in one statement, events only when the change returned a row', async () => {
    const first = started('w-1');
    const events = [Outbox.row(ServiceStartedEvent, first, { id: 'evt-w-1' }), Outbox.row(ServiceStartedEvent, started('w-1b'), { id: 'evt-w-1b' })];
    const inserted = await Outbox.withEvents<{ id: string }>(ds, 'INSERT INTO passport.orders (id) VALUES ($1) RETURNING id', ['w-1'], events);
    expect(inserted).toEqual([{ id: 'w-1' }]);
    expect((await outboxRows()).map((r) => [r.id, r.event, r.sent])).toEqual([
      ['evt-w-1', 'service.started', false],
      ['evt-w-1b', 'service.started', false],
    ]);
    const [stored] = (await ds.query(`SELECT payload, headers FROM passport.outbox WHERE id = 'evt-w-1'`)) as { payload: unknown; headers: unknown }[];
    expect(stored!.payload).toEqual(first);
    expect(stored!.headers).toEqual({});

    // A guarded change that matches nothing writes no event.
    const none = await Outbox.withEvents(ds, 'DELETE FROM passport.orders WHERE id = $1 RETURNING id', ['no-such-order'], [Outbox.row(ServiceStartedEvent, started('w-2'), { id: 'evt-w-2' })]);
    expect(none).toEqual([]);
    // A failing change writes no event either (one statement: all or nothing).
    await expect(Outbox.withEvents(ds, 'INSERT INTO passport.orders (id) VALUES ($1) RETURNING id', ['w-1'], [Outbox.row(ServiceStartedEvent, started('w-3'), { id: 'evt-w-3' })])).rejects.toThrow(/duplicate key/);
    // An event id that already exists fails the whole statement: the data change is undone.
    await expect(Outbox.withEvents(ds, 'INSERT INTO passport.orders (id) VALUES ($1) RETURNING id', ['w-4'], [Outbox.row(ServiceStartedEvent, started('w-4'), { id: 'evt-w-1' })])).rejects.toThrow(/duplicate key/);
    expect(((await ds.query(`SELECT id FROM passport.orders ORDER BY id`)) as { id: string }[]).map((r) => r.id)).toEqual(['w-1']);
    expect((await outboxRows()).map((r) => r.id)).toEqual(['evt-w-1', 'evt-w-1b']);
  });

  it('Outbox.row refuses a payload its event schema does not allow, before anything is written', () => {
    expect(() => Outbox.row(ServiceStartedEvent, { service: 'passport' } as unknown as Started)).toThrow(StackError);
  });

  it('writes the event exactly when the data commits', async () => {
    await placeOrder('o-rolled-back', { rollback: true });
    expect(await outboxRows()).toEqual([]);
    expect(await ds.query('SELECT id FROM passport.orders')).toEqual([]);

    await placeOrder('o-committed');
    const rows = (await ds.query('SELECT id, event, payload, headers, sent_at, created_at FROM passport.outbox')) as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: 'o-committed', event: 'service.started', headers: {}, sent_at: null });
    expect((rows[0]!.payload as Started).instance).toBe('o-committed');
    expect(rows[0]!.created_at).toBeInstanceOf(Date);
  });

  it('refuses an invalid payload inside the transaction, so the data does not commit either', async () => {
    const err = await ds
      .transaction(async (manager) => {
        await manager.query('INSERT INTO passport.orders (id) VALUES ($1)', ['o-bad']);
        await Outbox.enqueue(manager, ServiceStartedEvent, { ...started('x'), version: 7 } as unknown as Started);
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StackError);
    expect((err as StackError).code).toBe('INVALID_REQUEST');
    expect(await ds.query('SELECT id FROM passport.orders')).toEqual([]);
  });

  it('publishes committed rows in seq order with their ids, marks them sent, and publishes nothing twice', async () => {
    for (const id of ['o-1', 'o-2', 'o-3']) await placeOrder(id);
    const bus = new RecordingBus();
    const r = relay(bus, { batchSize: 2 });
    expect(await r.flush()).toBe(3);
    expect(bus.published.map((p) => [p.event, p.id, (p.payload as Started).instance])).toEqual([
      ['service.started', 'o-1', 'o-1'],
      ['service.started', 'o-2', 'o-2'],
      ['service.started', 'o-3', 'o-3'],
    ]);
    expect((await outboxRows()).map((row) => row.sent)).toEqual([true, true, true]);
    expect(await r.flush()).toBe(0);
    expect(bus.published).toHaveLength(3);
  });

  it('keeps a row the bus failed to take and publishes it on a later round', async () => {
    await placeOrder('o-retry');
    const bus = new RecordingBus();
    bus.failWith = new StackError('SERVICE_UNAVAILABLE', 'NATS is down');
    relay(bus).start();
    await waitUntil(() => bus.attempts >= 3, 'three failed attempts');
    expect(bus.published).toEqual([]);
    expect(await outboxRows()).toMatchObject([{ id: 'o-retry', sent: false }]);

    bus.failWith = undefined;
    await waitUntil(async () => (await outboxRows())[0]!.sent, 'the row marked sent');
    expect(bus.ids()).toEqual(['o-retry']);
  });

  it('sets aside a row the bus refuses for good, and goes on with the next ones', async () => {
    await placeOrder('o-poison');
    await placeOrder('o-next');
    const bus = new RecordingBus();
    const refusing = {
      publish: (...args: Parameters<RecordingBus['publish']>) =>
        args[2].id === 'o-poison' ? Promise.reject(new StackError('INVALID_REQUEST', 'no longer matches the schema')) : bus.publish(...args),
    };
    const r = new OutboxRelay({ dataSource: ds, bus: refusing });
    expect(await r.flush()).toBe(1);
    expect(bus.ids()).toEqual(['o-next']);
    expect(await outboxRows()).toMatchObject([
      { id: 'o-poison', sent: false, failed: true },
      { id: 'o-next', sent: true, failed: false },
    ]);
    expect(await ds.query("SELECT last_error FROM passport.outbox WHERE id = 'o-poison'")).toEqual([{ last_error: 'no longer matches the schema' }]);
  });

  it('leaves rows of events it was not given for another relay', async () => {
    await placeOrder('o-started');
    await ds.transaction((m) => Outbox.enqueue(m, AuditRecordedEvent, { id: 'aud_1', occurred_at: new Date().toISOString(), layer: 'system', action: 'test.run', outcome: 'success' }, { id: 'a-1' }));
    const bus = new RecordingBus();
    expect(await relay(bus, { events: [AuditRecordedEvent] }).flush()).toBe(1);
    expect(bus.published.map((p) => p.event)).toEqual(['audit.recorded']);
    expect((await outboxRows()).find((row) => row.id === 'o-started')?.sent).toBe(false);
  });

  it('wakes at once on notify() instead of waiting for the interval', async () => {
    const bus = new RecordingBus();
    const r = relay(bus, { intervalMs: 60_000 });
    r.start();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the first round, on an empty outbox
    await writeBehindRelay('o-notified');
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(bus.published).toHaveLength(0); // the next round is a minute away
    r.notify();
    await waitUntil(() => bus.published.length === 1, 'the notified publish', 2000);
    expect(bus.ids()).toEqual(['o-notified']);
  });

  it('withEvents: many events after the statement’s own parameters, each stored exactly as given', async () => {
    // Values that an array literal would have had to escape: quotes, backslashes, braces, commas, NULL-looking text, non-ASCII.
    const awkward = ['say "hi"', 'C:\\path\\x', '{a,b}', 'NULL', 'ünïcødé ✓', "it's"];
    const payloads = Array.from({ length: 30 }, (_, i) => started(`m-${i}-${awkward[i % awkward.length]}`));
    const rows = payloads.map((p, i) => Outbox.row(ServiceStartedEvent, p, { id: `evt-m-${i}`, traceparent: `00-${'a'.repeat(31)}${i % 10}-${'b'.repeat(16)}-01` }));
    const changed = await Outbox.withEvents<{ id: string; note: string }>(ds, `INSERT INTO passport.orders (id) SELECT $1 WHERE $2::int = 2 AND $3::text = 'x' RETURNING id, $3::text AS note`, ['m-1', 2, 'x'], rows);
    expect(changed).toEqual([{ id: 'm-1', note: 'x' }]);
    const stored = (await ds.query(`SELECT id, payload, headers FROM passport.outbox ORDER BY seq`)) as { id: string; payload: unknown; headers: { traceparent: string } }[];
    expect(stored.map((r) => r.id)).toEqual(rows.map((r) => r.id));
    expect(stored.map((r) => r.payload)).toEqual(payloads);
    expect(stored.map((r) => r.headers.traceparent)).toEqual(rows.map((_, i) => `00-${'a'.repeat(31)}${i % 10}-${'b'.repeat(16)}-01`));
  });

  it('publishes what withEvents committed within its nudge delay, not at the next interval; a change that wrote nothing does not wake it', async () => {
    const bus = new RecordingBus();
    const r = relay(bus, { intervalMs: 60_000, nudgeDelayMs: 20 });
    r.start();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the first round, on an empty outbox
    // Written behind the relay's back (no nudge): it waits for the interval.
    await writeBehindRelay('o-quiet');
    const none = await Outbox.withEvents(ds, 'DELETE FROM passport.orders WHERE id = $1 RETURNING id', ['no-such-order'], [Outbox.row(ServiceStartedEvent, started('n-0'), { id: 'evt-none' })]);
    expect(none).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(bus.published).toHaveLength(0);
    await Outbox.withEvents(ds, 'INSERT INTO passport.orders (id) VALUES ($1) RETURNING id', ['n-1'], [Outbox.row(ServiceStartedEvent, started('n-1'), { id: 'evt-nudged' })]);
    await waitUntil(() => bus.published.length === 2, 'the nudged round', 2000);
    expect(bus.ids()).toEqual(['o-quiet', 'evt-nudged']);
    // A stopped relay is not nudged (and not kept alive by the registry).
    await r.stop();
    await Outbox.withEvents(ds, 'INSERT INTO passport.orders (id) VALUES ($1) RETURNING id', ['n-2'], [Outbox.row(ServiceStartedEvent, started('n-2'), { id: 'evt-after-stop' })]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(bus.ids()).toEqual(['o-quiet', 'evt-nudged']);
  });

  it('publishes what a committed transaction enqueued within its nudge delay; a rolled-back one wakes nothing', async () => {
    const bus = new RecordingBus();
    const r = relay(bus, { intervalMs: 60_000, nudgeDelayMs: 20 });
    r.start();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the first round, on an empty outbox
    await placeOrder('o-rolled-back', { rollback: true });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(bus.published).toHaveLength(0);
    // A savepoint's release inside the transaction is not its commit: the relay runs after the outer COMMIT.
    await ds.transaction(async (manager) => {
      await manager.transaction(async (inner) => {
        await inner.query('INSERT INTO passport.orders (id) VALUES ($1)', ['o-nested']);
        await Outbox.enqueue(inner, ServiceStartedEvent, started('o-nested'), { id: 'o-nested' });
      });
      await new Promise((resolve) => setTimeout(resolve, 150));
    });
    await waitUntil(() => bus.published.length === 1, 'the round after the commit', 2000);
    await placeOrder('o-committed');
    await waitUntil(() => bus.published.length === 2, 'the nudged round', 2000);
    expect(bus.ids()).toEqual(['o-nested', 'o-committed']);
    await r.stop();
  });

  it('keeps its background rounds going when a flush() is in flight as a round falls due', async () => {
    await placeOrder('o-first');
    const bus = new RecordingBus();
    bus.delayMs = 150;
    const r = relay(bus, { intervalMs: 20 });
    const flushed = r.flush(); // holds the round for 150 ms
    r.start(); // its first round falls due meanwhile
    expect(await flushed).toBe(1);
    bus.delayMs = 0;
    await placeOrder('o-second');
    await waitUntil(() => bus.published.length === 2, 'the background round after the flush');
    expect(bus.ids()).toEqual(['o-first', 'o-second']);
  });

  it('stop() waits for the round in flight, which still marks what it published', async () => {
    await placeOrder('o-slow');
    const bus = new RecordingBus();
    bus.delayMs = 300;
    const r = relay(bus);
    r.start();
    await waitUntil(() => bus.attempts === 1, 'the publish to start');
    await r.stop();
    expect(bus.ids()).toEqual(['o-slow']);
    expect(await outboxRows()).toMatchObject([{ id: 'o-slow', sent: true }]);
  });

  it('prunes rows sent longer ago than the retention, never unsent ones', async () => {
    for (const id of ['o-old', 'o-recent', 'o-unsent']) await placeOrder(id);
    await ds.query("UPDATE passport.outbox SET sent_at = now() - interval '2 hours' WHERE id = 'o-old'");
    await ds.query("UPDATE passport.outbox SET sent_at = now() WHERE id = 'o-recent'");
    const r = relay(new RecordingBus(), { retentionMs: 3600_000 });
    expect(await r.prune()).toBe(1);
    expect((await outboxRows()).map((row) => row.id)).toEqual(['o-recent', 'o-unsent']);
  });

  it('publishes inside the trace of the request that wrote the event', async () => {
    new NodeTracerProvider().register();
    try {
      const traceId = await trace.getTracer('test').startActiveSpan('POST /v1/orders', async (span) => {
        await placeOrder('o-traced');
        span.end();
        return span.spanContext().traceId;
      });
      const bus = new RecordingBus();
      await relay(bus).flush();
      expect(bus.published[0]!.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    } finally {
      trace.disable();
      context.disable();
      propagation.disable();
    }
  });

  it('publishes, after a restart, what a process killed between commit and publish left behind, exactly once', async () => {
    const child = spawn(process.execPath, [join(__dirname, 'testing', 'commit-and-die.fixture.js'), db.url, 'passport', 'o-orphan', JSON.stringify(started('o-orphan'))], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    expect({ stdout, stderr, code, signal }).toEqual({ stdout: 'committed\n', stderr: '', code: null, signal: 'SIGKILL' });
    expect(await outboxRows()).toMatchObject([{ id: 'o-orphan', sent: false }]);

    const bus = new RecordingBus();
    relay(bus).start();
    await waitUntil(async () => (await outboxRows())[0]!.sent, 'the orphan row published');
    await new Promise((resolve) => setTimeout(resolve, 100)); // a few more rounds: still once
    expect(bus.ids()).toEqual(['o-orphan']);
  });
});

describe('claimMessage (real Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;

  beforeAll(async () => {
    db = await createTestDatabase('stack_persist_inbox');
    ds = createServiceDataSource({ service: 'audit', url: db.url, entities: [], migrations: [] });
    await ds.initialize();
    await migrateUnderLock(ds);
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it('is true the first time a consumer sees a message and false for a redelivery', async () => {
    expect(await ds.transaction((m) => claimMessage(m, 'audit-ingest', 'msg-1'))).toBe(true);
    expect(await ds.transaction((m) => claimMessage(m, 'audit-ingest', 'msg-1'))).toBe(false);
    // Another consumer of the same message has its own claim.
    expect(await ds.transaction((m) => claimMessage(m, 'revocation-set', 'msg-1'))).toBe(true);
  });

  it('leaves no claim when the handler rolls back, so the redelivery applies', async () => {
    await ds
      .transaction(async (m) => {
        expect(await claimMessage(m, 'audit-ingest', 'msg-2')).toBe(true);
        throw new Error('handler failed');
      })
      .catch(() => undefined);
    expect(await ds.transaction((m) => claimMessage(m, 'audit-ingest', 'msg-2'))).toBe(true);
  });

  it('refuses to run outside the handler transaction', async () => {
    await expect(claimMessage(ds.manager, 'audit-ingest', 'msg-3')).rejects.toThrow(/open transaction/);
  });
});
