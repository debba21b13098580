/**
 * The audit log in the distributed shape (its own process on Postgres and NATS): the shared
 * checks, tampering in Postgres named by `stack audit verify`, and an audit process killed with
 * SIGKILL while events flow loses nothing and doubles nothing.
 */
import { connectNatsBus, type BusConnection } from '@stack/bus';
import { AuditCheckpointSignedEvent, openNote, parseCheckpoint, parseVerifierKey, type PayloadOf } from '@stack/contracts';
import { AuditRecorder } from '@stack/runtime';
import { startDistributedStack, uniqueName, type DistributedStack } from '@stack/testing';
import { Client } from 'pg';

import { adminOf, auditClient, expectOperatorsIsolated, expectReadsRecordedAndProven, stackAuditVerify, type AuditTarget } from './support/audit-checks';
import { eventually } from './support/wait';

describe('audit log, distributed', () => {
  let stack: DistributedStack;
  let target: AuditTarget;
  let db: Client;

  beforeAll(async () => {
    stack = await startDistributedStack({ services: ['audit', 'passport'], env: { STACK_AUDIT_CHECKPOINT_INTERVAL_MS: '300' }, logLevel: 'warn' });
    target = { publicUrl: stack.publicUrl, internalSecret: stack.internalSecret };
    db = new Client({ connectionString: stack.database.url });
    await db.connect();
  }, 180_000);

  afterAll(async () => {
    await db?.end();
    await stack?.stop();
  });

  it('records reads, signs checkpoints, proves inclusion and consistency, and its export verifies offline', async () => {
    await expectReadsRecordedAndProven(target, 'op_dist_a');
  }, 120_000);

  it("never shows another operator's entries", async () => {
    await expectOperatorsIsolated(target, 'op_dist_a', 'op_dist_b');
  }, 120_000);

  it('publishes each signed checkpoint on STACK_EVENTS, with a note the public key opens', async () => {
    const conn: BusConnection = await connectNatsBus({ servers: stack.natsUrl, prefix: stack.busPrefix, internalSecret: Buffer.from(stack.internalSecret, 'base64'), timeoutMs: 2000, instanceId: 'e2e-events' });
    try {
      let resolve: (p: PayloadOf<typeof AuditCheckpointSignedEvent>) => void = () => undefined;
      const got = new Promise<PayloadOf<typeof AuditCheckpointSignedEvent>>((r) => (resolve = r));
      const handle = await conn.forService('passport').consume({ durable: uniqueName('ckpt'), events: [AuditCheckpointSignedEvent] }, async (_e, payload) => {
        const p = payload as PayloadOf<typeof AuditCheckpointSignedEvent>;
        if (p.operator_id === 'op_dist_a') resolve(p);
      });
      const event = await got;
      await handle.stop();
      const key = ((await (await fetch(`${stack.publicUrl}/v1/audit/public-key`)).json()) as { verifier_key: string }).verifier_key;
      const body = parseCheckpoint(openNote(event.note, [parseVerifierKey(key)]).text);
      expect(body).toMatchObject({ treeSize: event.tree_size, origin: event.origin });
      expect(body.rootHash.toString('base64')).toBe(event.root_hash);
    } finally {
      await conn.close();
    }
  }, 60_000);

  it('names the entry changed in Postgres after a checkpoint', async () => {
    const admin = auditClient(target, adminOf('op_dist_a'));
    await admin.json('/v1/audit/checkpoints/latest');
    const rows = await db.query<{ id: string; entry: string }>(`SELECT id, entry FROM audit.entries WHERE operator_id = 'op_dist_a' AND leaf_index = 1`);
    const victim = rows.rows[0]!;
    await db.query(`UPDATE audit.entries SET entry = replace(entry, '"outcome":"success"', '"outcome":"denied"') WHERE id = $1`, [victim.id]);
    try {
      const res = await admin.get('/v1/audit/export');
      const verified = await stackAuditVerify(await res.text());
      expect(verified.code).toBe(1);
      expect(verified.out).toContain(`FAILED at leaf 1 (entry ${victim.id})`);
    } finally {
      await db.query(`UPDATE audit.entries SET entry = $2 WHERE id = $1`, [victim.id, victim.entry]);
    }
  }, 60_000);

  it('loses and doubles nothing when the audit process is killed while events flow', async () => {
    const sender: BusConnection = await connectNatsBus({ servers: stack.natsUrl, prefix: stack.busPrefix, internalSecret: Buffer.from(stack.internalSecret, 'base64'), timeoutMs: 2000, instanceId: 'e2e-sender' });
    try {
      const recorder = new AuditRecorder(sender.forService('credential-proxy'));
      const sent: string[] = [];
      let running = true;
      const flow = (async () => {
        for (let n = 0; running; n++) {
          const id = `aud_kill${String(n).padStart(8, '0')}`;
          await recorder.record({ id, operator_id: 'op_dist_kill', layer: 'proxy', action: 'credential.proxy', outcome: 'success' });
          sent.push(id);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await new Promise((r) => setTimeout(r, 1000));
      const old = stack.processes.find((p) => p.service === 'audit')!;
      await stack.removeReplica(old, { signal: 'SIGKILL' });
      await new Promise((r) => setTimeout(r, 1000));
      await stack.addReplica('audit');
      await new Promise((r) => setTimeout(r, 1000));
      running = false;
      await flow;
      const count = async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM audit.entries WHERE operator_id = 'op_dist_kill'`)).rows[0]!.n);
      await eventually(async () => ((await count()) >= sent.length ? true : undefined), 60_000, 'every sent event appended');
      const dup = await db.query(`SELECT id FROM audit.entries GROUP BY id HAVING count(*) > 1`);
      expect(dup.rows).toEqual([]);
      expect(await count()).toBe(sent.length);
      const res = await auditClient(target, adminOf('op_dist_kill')).get('/v1/audit/export');
      const verified = await stackAuditVerify(await res.text());
      expect(verified).toMatchObject({ code: 0 });
    } finally {
      await sender.close();
    }
  }, 120_000);
});
