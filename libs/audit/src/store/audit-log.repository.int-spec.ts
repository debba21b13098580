/**
 * Appends on the real Postgres: the one-statement path (a head this instance knows) and the
 * locking one (an unknown head, a head another replica moved, a redelivered id) must give the
 * same log — every id once, leaf indexes 0…n-1 without a gap, each leaf hash over its index.
 */
import { createServiceDataSource, migrateUnderLock, type ServiceDataSource } from '@stack/persistence';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { finishEntry } from '../log/audit-log.service';
import { AuditInit1764300000000 } from './audit-init.migration';
import { AuditLogRepository, type PreparedEntry } from './audit-log.repository';

let seq = 0;
const entry = (operator_id: string): PreparedEntry => ({
  entry: { id: `aud_t${String(++seq).padStart(6, '0')}`, occurred_at: new Date().toISOString(), operator_id, layer: 'proxy', action: 'credential.proxy', outcome: 'success' } as PreparedEntry['entry'],
});

describe('AuditLogRepository.appendBatch (Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;
  let statements: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('audit_repo');
    ds = createServiceDataSource({ service: 'audit', url: db.url, entities: [], migrations: [AuditInit1764300000000], poolSize: 3 });
    await ds.initialize();
    await migrateUnderLock(ds, {});
    // Counts what reaches Postgres (runStatement and transactions go through the driver's query runner).
    type Query = (q: string, ...rest: unknown[]) => Promise<unknown>;
    const driver = ds.driver as unknown as { createQueryRunner: (mode: 'master' | 'slave') => { query: Query } };
    const create = driver.createQueryRunner.bind(driver);
    driver.createQueryRunner = (mode) => {
      const runner = create(mode);
      const inner = runner.query.bind(runner);
      runner.query = (q: string, ...rest: unknown[]) => {
        statements.push(q.trim().split(/\s+/, 1)[0]!.toUpperCase());
        return inner(q, ...rest);
      };
      return runner;
    };
  });
  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  const rows = async (operator: string) =>
    (await ds.query(`SELECT id, leaf_index, encode(leaf_hash, 'hex') AS hash, entry FROM audit.entries WHERE operator_id = $1 ORDER BY leaf_index`, [operator])) as { id: string; leaf_index: string; hash: string; entry: string }[];

  const expectWellFormed = async (operator: string, ids: string[]) => {
    const got = await rows(operator);
    expect(got.map((r) => r.id).sort()).toEqual([...ids].sort());
    got.forEach((r, i) => {
      expect(Number(r.leaf_index)).toBe(i);
      const parsed = JSON.parse(r.entry) as { leaf_index: number };
      expect(parsed.leaf_index).toBe(i);
    });
    const [head] = (await ds.query(`SELECT tree_size FROM audit.heads WHERE operator_id = $1`, [operator])) as { tree_size: string }[];
    expect(Number(head!.tree_size)).toBe(ids.length);
  };

  it('appends a known head in one statement, and numbers on from it', async () => {
    const repo = new AuditLogRepository(ds);
    const first = [entry('op_one'), entry('op_one')];
    statements = [];
    await repo.appendBatch(first, finishEntry);
    expect(statements).toContain('START'); // the first batch of an unknown head locks
    const second = [entry('op_one'), entry('op_one'), entry('op_one')];
    statements = [];
    const appended = await repo.appendBatch(second, finishEntry);
    expect(statements).toEqual(['WITH']);
    expect(appended.map((a) => a.leafIndex)).toEqual([2, 3, 4]);
    await expectWellFormed('op_one', [...first, ...second].map((e) => e.entry.id));
  });

  it('falls back to the locking append when another replica moved the head, and loses nothing', async () => {
    const mine = new AuditLogRepository(ds);
    const other = new AuditLogRepository(ds);
    const ids: string[] = [];
    const batch = (n: number) => Array.from({ length: n }, () => entry('op_two'));
    for (const [repo, n] of [[mine, 2], [other, 3], [mine, 2], [mine, 1], [other, 4], [mine, 3]] as const) {
      const b = batch(n);
      ids.push(...b.map((e) => e.entry.id));
      const appended = await repo.appendBatch(b, finishEntry);
      expect(appended).toHaveLength(n);
    }
    await expectWellFormed('op_two', ids);
  });

  it('drops a redelivered id on the fast path too, without a gap', async () => {
    const repo = new AuditLogRepository(ds);
    const a = [entry('op_three'), entry('op_three')];
    await repo.appendBatch(a, finishEntry);
    await repo.appendBatch([entry('op_three')].concat(a), finishEntry).then((appended) => expect(appended).toHaveLength(1));
    const all = (await rows('op_three')).map((r) => r.id);
    expect(all).toHaveLength(3);
    await expectWellFormed('op_three', all);
  });

  it('appends a batch of several operators, each on its own tree', async () => {
    const repo = new AuditLogRepository(ds);
    const warm = [entry('op_four'), entry('op_five')];
    await repo.appendBatch(warm, finishEntry);
    const mixed = [entry('op_four'), entry('op_five'), entry('op_four'), entry('op_six')];
    await repo.appendBatch(mixed, finishEntry);
    await expectWellFormed('op_four', [warm[0]!, mixed[0]!, mixed[2]!].map((e) => e.entry.id));
    await expectWellFormed('op_five', [warm[1]!, mixed[1]!].map((e) => e.entry.id));
    await expectWellFormed('op_six', [mixed[3]!.entry.id]);
  });

  it('keeps a head exact under concurrent appends by two replicas', async () => {
    const a = new AuditLogRepository(ds);
    const b = new AuditLogRepository(ds);
    await a.appendBatch([entry('op_seven')], finishEntry);
    await b.appendBatch([entry('op_seven')], finishEntry);
    const batches = Array.from({ length: 20 }, () => [entry('op_seven'), entry('op_seven')]);
    await Promise.all(batches.map((bt, i) => (i % 2 ? a : b).appendBatch(bt, finishEntry)));
    const ids = (await rows('op_seven')).map((r) => r.id);
    expect(ids).toHaveLength(42);
    await expectWellFormed('op_seven', ids);
  });
});
