/**
 * Nothing is lost and nothing is doubled while events flow at a steady rate through: the audit
 * service stopped and started again, its NATS server restarted, its Postgres stopped for 10 s —
 * all on a NATS server and a Postgres cluster this test starts for itself.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type BusConnection } from '@stack/bus';
import { AuditRecorder } from '@stack/runtime';
import { startNatsServer, uniqueName, type TestNatsServer } from '@stack/testing';

import { startAuditTestKit, type AuditTestKit } from '../testing/audit-test-kit';
import { startPrivatePostgres, type PrivatePostgres } from '../testing/private-postgres';

const OP = 'op_faults';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('audit ingest under faults (own NATS, own Postgres)', () => {
  let pg: PrivatePostgres;
  let nats: TestNatsServer;
  let sender: BusConnection;
  let audit: AuditTestKit | undefined;
  const prefix = uniqueName('auf');
  const internalSecret = randomBytes(32).toString('base64');

  beforeAll(async () => {
    [pg, nats] = await Promise.all([startPrivatePostgres(), startNatsServer()]);
  }, 120_000);

  afterAll(async () => {
    await audit?.stop();
    await sender?.close();
    await nats?.stop();
    await pg?.destroy();
  }, 60_000);

  it('keeps every acknowledged event exactly once, in a tree that verifies', async () => {
    const start = () => startAuditTestKit({ databaseUrl: pg.url, natsUrl: nats.url, prefix, internalSecret, checkpointIntervalMs: 1000 });
    audit = await start();
    sender = await connectNatsBus({ servers: nats.url, prefix, internalSecret: Buffer.from(internalSecret, 'base64'), timeoutMs: 2000, instanceId: 'sender' });
    const recorder = new AuditRecorder(sender.forService('credential-proxy'));
    const sent = new Set<string>();
    let unavailable = 0;
    let running = true;
    // A steady 50 events/s; an event that could not be made durable is retried with the same id, as a caller would before acting.
    const flow = (async () => {
      let n = 0;
      while (running) {
        const id = `aud_fault${String(n++).padStart(8, '0')}`;
        for (;;) {
          try {
            await recorder.record({ id, operator_id: OP, layer: 'gateway', action: 'tool.call', outcome: 'success' });
            sent.add(id);
            break;
          } catch (err) {
            expect((err as { code?: string }).code).toBe('AUDIT_UNAVAILABLE');
            unavailable += 1;
            await sleep(100);
          }
        }
        await sleep(20);
      }
    })();

    await sleep(1500);
    await audit.stop(); // the audit service goes away mid-flow…
    await sleep(1000);
    audit = await start(); // …and comes back: its durable consumer resumes
    await sleep(1500);
    await nats.restart({ downMs: 1000 }); // the NATS server restarts (JetStream keeps the stream on disk)
    await sleep(1500);
    await pg.stop(); // Postgres is away for 10 s: batches fail, nothing is acknowledged
    await sleep(10_000);
    await pg.start();
    await sleep(1500);
    running = false;
    await flow;

    const size = () => audit!.log.repo.head(OP).then((h) => h?.treeSize ?? 0).catch(() => -1);
    const deadline = Date.now() + 90_000;
    while ((await size()) < sent.size && Date.now() < deadline) await sleep(250);
    const rows = (await audit.dataSource.query(`SELECT id FROM audit.entries WHERE operator_id = $1`, [OP])) as { id: string }[];
    const ids = rows.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(sent.size);
    expect(ids.every((id) => sent.has(id))).toBe(true);
    expect(sent.size).toBeGreaterThan(300);
    const result = await audit.log.verifyAll(OP);
    expect(result).toMatchObject({ ok: true, entries: sent.size });
    expect(unavailable).toBeGreaterThan(0); // the NATS restart was felt by the sender
  }, 180_000);
});
