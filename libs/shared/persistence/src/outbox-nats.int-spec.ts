/**
 * The outbox against the real bus: a relay that published and died before marking the row
 * sent publishes it again after restart, JetStream recognises the duplicate by its id, and a
 * consumer guarded by claimMessage applies the event once even when it is redelivered.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type BusConnection, type PublishAck } from '@stack/bus';
import { STREAM_BASES, ServiceStartedEvent, streamName, type PayloadOf } from '@stack/contracts';
import { TEST_NATS_URL, createTestDatabase, uniqueName, type TestDatabase } from '@stack/testing';
import { connect } from 'nats';

import { claimMessage } from './inbox';
import { migrateUnderLock } from './migrations';
import { Outbox } from './outbox';
import { OutboxRelay } from './outbox-relay';
import { createServiceDataSource, type ServiceDataSource } from './service-data-source';
import { Orders1764000000300, waitUntil } from './testing/test-migrations.test-helper';

describe('outbox relay and idempotent consumer on NATS JetStream', () => {
  const prefix = uniqueName('persist');
  let db: TestDatabase;
  let ds: ServiceDataSource;
  let conn: BusConnection;

  beforeAll(async () => {
    db = await createTestDatabase('stack_persist_nats');
    ds = createServiceDataSource({ service: 'passport', url: db.url, entities: [], migrations: [Orders1764000000300] });
    await ds.initialize();
    await migrateUnderLock(ds);
    await ds.query('CREATE TABLE passport.effects (applied int NOT NULL)');
    await ds.query('INSERT INTO passport.effects VALUES (0)');
    conn = await connectNatsBus({ servers: TEST_NATS_URL, prefix, internalSecret: randomBytes(32), timeoutMs: 5000, instanceId: 'persistence-test' });
    await conn.ensureStreams();
  });

  afterAll(async () => {
    await conn?.close();
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      const jsm = await nc.jetstreamManager();
      for (const base of STREAM_BASES) await jsm.streams.delete(streamName(prefix, base)).catch(() => undefined);
    } finally {
      await nc.close();
    }
    await ds?.destroy();
    await db?.drop();
  });

  it('republishes after a crash between publish and mark, JetStream drops the duplicate, the consumer applies it once', async () => {
    const payload: PayloadOf<typeof ServiceStartedEvent> = { service: 'passport', instance: 'i-1', version: '0.1.0', started_at: new Date().toISOString() };
    const id = await ds.transaction(async (manager) => {
      await manager.query('INSERT INTO passport.orders (id) VALUES ($1)', ['o-1']);
      return Outbox.enqueue(manager, ServiceStartedEvent, payload);
    });

    const bus = conn.forService('passport');
    const acks: PublishAck[] = [];
    const dying = new OutboxRelay({
      dataSource: ds,
      bus: {
        publish: async (...args: Parameters<typeof bus.publish>) => {
          acks.push(await bus.publish(...args));
          throw new Error('relay process killed before marking the row sent');
        },
      },
    });
    await expect(dying.flush()).rejects.toThrow(/killed/);
    expect(await ds.query('SELECT sent_at FROM passport.outbox WHERE id = $1', [id])).toEqual([{ sent_at: null }]);

    const restarted = new OutboxRelay({
      dataSource: ds,
      bus: {
        publish: async (...args: Parameters<typeof bus.publish>) => {
          const ack = await bus.publish(...args);
          acks.push(ack);
          return ack;
        },
      },
    });
    expect(await restarted.flush()).toBe(1);
    const stream = streamName(prefix, 'EVENTS');
    expect(acks).toEqual([
      { stream, seq: 1, duplicate: false },
      { stream, seq: 1, duplicate: true },
    ]);
    expect(await bus.lastSequence('EVENTS')).toBe(1);
    const [{ sent }] = (await ds.query('SELECT sent_at IS NOT NULL AS sent FROM passport.outbox WHERE id = $1', [id])) as [{ sent: boolean }];
    expect(sent).toBe(true);

    // The consumer commits its effect, then "crashes" before the acknowledgement on the first
    // delivery; JetStream redelivers; the claim makes the second delivery a no-op.
    const deliveries: { id: string; delivery: number; claimed: boolean }[] = [];
    const consumer = await conn.forService('audit').consume({ durable: uniqueName('effects'), events: [ServiceStartedEvent], ackWaitMs: 2000 }, async (_event, _payload, ctx) => {
      const claimed = await ds.transaction(async (manager) => {
        const first = await claimMessage(manager, 'effects', ctx.id);
        if (first) await manager.query('UPDATE passport.effects SET applied = applied + 1');
        return first;
      });
      deliveries.push({ id: ctx.id, delivery: ctx.deliveries, claimed });
      if (ctx.deliveries === 1) throw new Error('consumer crashed after commit, before ack');
    });
    try {
      await waitUntil(() => deliveries.length >= 2, 'the redelivery', 15_000);
      // Give a wrongly unacknowledged message the chance to come a third time.
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      await consumer.stop();
    }
    expect(deliveries).toEqual([
      { id, delivery: 1, claimed: true },
      { id, delivery: 2, claimed: false },
    ]);
    expect(await ds.query('SELECT applied FROM passport.effects')).toEqual([{ applied: 1 }]);
  });
});
