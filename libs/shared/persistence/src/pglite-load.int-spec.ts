/**
 * The one-process mode's risk, tested early: all six services share one embedded Postgres,
 * whose single backend runs one transaction at a time. Many concurrent transactions from
 * every service, with their outbox relays publishing at the same time, must all complete —
 * no deadlock — with rolled-back work invisible and every committed event published once.
 */
import { performance } from 'node:perf_hooks';

import { SERVICE_NAMES, ServiceStartedEvent } from '@stack/contracts';

import { migrateUnderLock } from './migrations';
import { Outbox } from './outbox';
import { OutboxRelay } from './outbox-relay';
import { createServiceDataSource, type ServiceDataSource } from './service-data-source';
import { qualifiedTable } from './sql';
import { startTestEmbeddedPostgres, type TestEmbeddedPostgres } from './testing/embedded-postgres.test-helper';
import { RecordingBus } from './testing/recording-bus.test-helper';
import { Orders1764000000300, waitUntil } from './testing/test-migrations.test-helper';

const PER_SERVICE = 50;
const DEADLOCK_BOUND_MS = 30_000;

class RollBack extends Error {}

function withinBound<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${DEADLOCK_BOUND_MS} ms: the embedded Postgres deadlocked or starved`)), DEADLOCK_BOUND_MS);
  });
  return Promise.race([work, bound]).finally(() => clearTimeout(timer));
}

describe('six services on one embedded Postgres', () => {
  let pg: TestEmbeddedPostgres;
  let sources: ServiceDataSource[] = [];
  let relays: OutboxRelay[] = [];

  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    await Promise.all(sources.filter((ds) => ds.isInitialized).map((ds) => ds.destroy()));
    await pg?.dispose();
  });

  it('carries concurrent transactions from all six services while their relays publish, without deadlock', async () => {
    pg = await startTestEmbeddedPostgres();
    sources = SERVICE_NAMES.map((service) => createServiceDataSource({ service, url: pg.url, entities: [], migrations: [Orders1764000000300], poolSize: 5 }));
    await Promise.all(sources.map((ds) => ds.initialize()));
    // All six at once, as `npm start` does.
    await withinBound(Promise.all(sources.map((ds) => migrateUnderLock(ds))), 'migrating six schemas');

    const buses = sources.map(() => {
      const bus = new RecordingBus();
      bus.delayMs = 1; // a publish takes a little while, as over the network
      return bus;
    });
    relays = sources.map((ds, i) => new OutboxRelay({ dataSource: ds, bus: buses[i]!, intervalMs: 25, batchSize: 20 }));
    for (const r of relays) r.start();

    const started = performance.now();
    const outcomes = await withinBound(
      Promise.all(
        sources.flatMap((ds, s) => {
          const orders = qualifiedTable(ds.schema, 'orders');
          return Array.from({ length: PER_SERVICE }, async (_, i) => {
            const id = `${ds.service}-${i}`;
            if (i % 10 === 9) {
              // A plain read outside any transaction, between the others.
              await ds.query(`SELECT count(*) FROM ${orders}`);
            }
            try {
              await ds.transaction(async (manager) => {
                await manager.query(`INSERT INTO ${orders} (id, note) VALUES ($1, $2)`, [id, 'load']);
                if (i % 3 === 0) await manager.query(`SELECT id FROM ${orders} WHERE id = $1`, [id]);
                await Outbox.enqueue(manager, ServiceStartedEvent, { service: ds.service, instance: id, version: '0', started_at: new Date().toISOString() }, { id });
                if (i % 5 === 4) throw new RollBack();
              });
            } catch (err) {
              if (err instanceof RollBack) return { id, service: s, committed: false };
              throw err;
            }
            relays[s]!.notify();
            return { id, service: s, committed: true };
          });
        }),
      ),
      `${SERVICE_NAMES.length * PER_SERVICE} transactions`,
    );
    const elapsedMs = performance.now() - started;

    const committed = outcomes.filter((o) => o.committed);
    await withinBound(
      waitUntil(() => buses.reduce((n, b) => n + b.published.length, 0) >= committed.length, 'every committed event published', DEADLOCK_BOUND_MS),
      'publishing',
    );
    const drainedMs = performance.now() - started;
    await Promise.all(relays.map((r) => r.stop()));

    const total = outcomes.length;
    console.log(
      `embedded Postgres (PGlite), one process: ${total} transactions (insert + outbox row, a third with a read; ${committed.length} committed, ${total - committed.length} rolled back) ` +
        `from ${SERVICE_NAMES.length} data sources x ${PER_SERVICE} concurrent, with ${relays.length} relays running: ` +
        `${elapsedMs.toFixed(0)} ms = ${((total / elapsedMs) * 1000).toFixed(0)} transactions/s; all ${committed.length} events published after ${drainedMs.toFixed(0)} ms`,
    );

    expect(total).toBe(SERVICE_NAMES.length * PER_SERVICE);
    for (const [s, ds] of sources.entries()) {
      const mine = outcomes.filter((o) => o.service === s);
      const expectedIds = mine.filter((o) => o.committed).map((o) => o.id).sort();
      expect(expectedIds).toHaveLength(PER_SERVICE - PER_SERVICE / 5);
      const orders = (await ds.query(`SELECT id FROM ${qualifiedTable(ds.schema, 'orders')} ORDER BY id`)) as { id: string }[];
      expect(orders.map((o) => o.id)).toEqual(expectedIds);
      const outbox = (await ds.query(`SELECT id, sent_at IS NOT NULL AS sent FROM ${qualifiedTable(ds.schema, 'outbox')} ORDER BY id`)) as { id: string; sent: boolean }[];
      expect(outbox).toEqual(expectedIds.map((id) => ({ id, sent: true })));
      // Each service's relay published its own events, each once.
      expect(buses[s]!.ids().sort()).toEqual(expectedIds);
    }
  });
});
