/**
 * Retention: a tree is closed when its period ends (its last checkpoint signed first), new
 * entries start a new tree, a closed tree is never rewritten, and after the retention time the
 * whole closed tree is dropped while its last checkpoint stays.
 */
import { verifyInclusion, type CallerContext } from '@stack/contracts';
import { TEST_NATS_URL, createTestDatabase, uniqueName, type TestDatabase } from '@stack/testing';

import { startAuditTestKit, type AuditTestKit } from '../testing/audit-test-kit';
import { verifyExportLines } from '@stack/contracts';

import { readScope } from './audit-log.service';

const OP = 'op_retention';
const admin: CallerContext = { issuer: 'auth', kind: 'member', operator_id: OP, member_id: 'mem_a', scopes: ['stack:admin'] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('audit retention', () => {
  let db: TestDatabase;
  let t: AuditTestKit;

  beforeAll(async () => {
    db = await createTestDatabase('audit_ret');
    t = await startAuditTestKit({ databaseUrl: db.url, natsUrl: TEST_NATS_URL, prefix: uniqueName('aur'), treePeriodMs: 1000, retentionMs: 2500 });
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await db?.drop();
  });

  const record = async (n: number) => {
    for (let i = 0; i < n; i++) await t.recorder.record({ operator_id: OP, layer: 'passport', action: 'passport.issue', outcome: 'success' });
  };
  const until = async (check: () => Promise<boolean>) => {
    const end = Date.now() + 15_000;
    while (!(await check())) {
      if (Date.now() > end) throw new Error('timed out');
      await sleep(50);
    }
  };
  const lines = async (treeId?: number) => {
    const out: string[] = [];
    for await (const l of t.log.exportLines(OP, treeId)) out.push(l);
    return out;
  };

  it('closes a tree per period, starts the next, never rewrites the closed one, and drops it whole after the retention time', async () => {
    await record(5);
    await until(async () => (await t.log.repo.head(OP))?.treeSize === 5);
    await sleep(1100);
    await t.log.signDue();
    const head = (await t.log.repo.head(OP))!;
    expect(head).toMatchObject({ treeId: 2, treeSize: 0 });
    const closed = await t.log.latestCheckpoint(OP, 1);
    expect(closed).toMatchObject({ tree_id: 1, tree_size: 5, origin: `audit.test/audit/${OP}/1` });
    const closedExport = await lines(1);
    expect(verifyExportLines(closedExport)).toMatchObject({ ok: true, entries: 5, verified_tree_size: 5 });
    // The closed tree's hashes left memory with it; a proof in it reloads them and still verifies.
    const inMemory = (t.log as unknown as { trees: Map<string, unknown> }).trees;
    expect(inMemory.has(`${OP}#1`)).toBe(false);
    const proof = await t.log.inclusionProof(readScope(admin), { leaf_index: 3, tree_id: 1 });
    expect(proof).toMatchObject({ leaf_index: 3, tree_size: 5, tree_id: 1 });
    expect(verifyInclusion(Buffer.from(proof.leaf_hash, 'base64'), 3, 5, proof.hashes.map((h) => Buffer.from(h, 'base64')), Buffer.from(closed.root_hash, 'base64'))).toBe(true);

    await record(3);
    await until(async () => (await t.log.repo.head(OP))?.treeSize === 3);
    // Newest first across trees, the cursor crossing from tree 2 into tree 1.
    const scope = readScope(admin);
    const first = await t.log.list(scope, { limit: 4 });
    expect(first.items.map((i) => [i.tree_id, i.leaf_index])).toEqual([
      [2, 2],
      [2, 1],
      [2, 0],
      [1, 4],
    ]);
    const rest = await t.log.list(scope, { limit: 10, cursor: first.next_cursor });
    expect(rest.items.map((i) => i.leaf_index)).toEqual([3, 2, 1, 0]);
    // The closed tree is exactly as it was.
    expect(await lines(1)).toEqual(closedExport);
    expect((await t.log.signNow(OP)).tree_id).toBe(2);

    await sleep(2600);
    await t.log.signDue();
    const left = (await t.dataSource.query(`SELECT tree_id, count(*)::int AS n FROM audit.entries WHERE operator_id = $1 GROUP BY tree_id ORDER BY tree_id`, [OP])) as { tree_id: number; n: number }[];
    expect(left).toEqual([{ tree_id: 2, n: 3 }]);
    const kept = (await t.dataSource.query(`SELECT tree_size::int AS size FROM audit.checkpoints WHERE operator_id = $1 AND tree_id = 1`, [OP])) as { size: number }[];
    expect(kept).toEqual([{ size: 5 }]);
    expect(verifyExportLines(await lines(2))).toMatchObject({ ok: true, entries: 3 });
  }, 60_000);
});
