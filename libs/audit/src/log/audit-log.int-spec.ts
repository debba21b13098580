/**
 * The audit log on the real Postgres and NATS: every event appended exactly once, proofs that
 * verify, tampering in Postgres detected and named, and no operator seeing another's entries.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AuditConsistencyProofCommand, AuditInclusionProofCommand, AuditLatestCheckpointCommand, AuditListCommand, AuditSignCheckpointCommand, AuditVerifyCommand, MerkleLevels, StackError, entryLeafHash, formatCheckpoint, signNote, verifyConsistency, verifyInclusion, type CallerContext } from '@stack/contracts';
import { TEST_NATS_URL, createTestDatabase, uniqueName, type TestDatabase } from '@stack/testing';

import { serveAuditCommands } from '../api/audit-bus.handlers';
import { auditCliCommand } from '../cli/audit-verify.command';
import { AuditLogRepository } from '../store/audit-log.repository';
import { startAuditTestKit, type AuditTestKit } from '../testing/audit-test-kit';
import { verifyExportLines } from '@stack/contracts';

import { AUDIT_TREE_BLOCK_BITS, entryFromEvent, finishEntry, readScope } from './audit-log.service';

const A = 'op_alpha';
const B = 'op_beta';
const admin = (operator_id: string): CallerContext => ({ issuer: 'auth', kind: 'member', operator_id, member_id: 'mem_admin', scopes: ['stack:admin'] });
const member = (operator_id: string, member_id: string): CallerContext => ({ issuer: 'auth', kind: 'member', operator_id, member_id, scopes: ['stack:audit'] });

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function exportLines(t: AuditTestKit, operator: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const l of t.log.exportLines(operator)) lines.push(l);
  return lines;
}

async function cliVerify(lines: string[]): Promise<{ code: number; out: string }> {
  const file = join(mkdtempSync(join(tmpdir(), 'audit-')), 'export.ndjson');
  writeFileSync(file, `${lines.join('\n')}\n`);
  let out = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  // Without --key it warns on stderr that it checked the file's own key (audit-verify.command.spec.ts checks that).
  const quiet = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const code = await auditCliCommand.run(['verify', file], []);
    return { code, out };
  } finally {
    spy.mockRestore();
    quiet.mockRestore();
  }
}

describe('audit log (Postgres + NATS)', () => {
  let db: TestDatabase;
  let t: AuditTestKit;
  const ids: string[] = [];
  const size = async (operator: string) => (await t.log.repo.head(operator))?.treeSize ?? 0;

  beforeAll(async () => {
    db = await createTestDatabase('audit_int');
    t = await startAuditTestKit({ databaseUrl: db.url, natsUrl: TEST_NATS_URL, prefix: uniqueName('aud') });
    await Promise.all(
      Array.from({ length: 120 }, async (_, i) => {
        const operator = i % 4 === 3 ? B : A;
        const id = await t.recorder.record({
          caller: member(operator, i % 2 ? 'mem_1' : 'mem_2'),
          layer: 'proxy',
          action: 'credential.proxy',
          outcome: i % 5 ? 'success' : 'denied',
          target: { service: 'github', method: 'get', host: 'API.github.com', path: `/repos/x/${i}?token=SECRET#frag` },
          duration_ms: i,
        });
        if (operator === A) ids.push(id);
      }),
    );
    await waitFor(async () => (await size(A)) + (await size(B)) === 120);
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await db?.drop();
  });

  it('appends every event exactly once, allow-listed, and a redelivered id changes nothing', async () => {
    const rows = (await t.dataSource.query(`SELECT id, operator_id, leaf_index, entry FROM audit.entries ORDER BY operator_id, leaf_index`)) as { id: string; operator_id: string; leaf_index: string; entry: string }[];
    expect(rows).toHaveLength(120);
    expect(new Set(rows.map((r) => r.id)).size).toBe(120);
    expect(rows.filter((r) => r.operator_id === A).map((r) => Number(r.leaf_index))).toEqual(Array.from({ length: 90 }, (_, i) => i));
    expect(rows.some((r) => r.entry.includes('SECRET') || r.entry.includes('frag'))).toBe(false);
    const one = JSON.parse(rows[0]!.entry) as { target: { host: string; method: string } };
    expect(one.target).toMatchObject({ host: 'api.github.com', method: 'GET' });
    // The same id again (as a redelivery after a lost ack would bring it): still 90 leaves, the
    // stored row untouched. (The one-statement path may number it before the statement finds the
    // id already there; nothing of that numbering is kept.)
    const again = await t.log.repo.appendBatch([{ entry: JSON.parse(rows[0]!.entry) }], finishEntry);
    expect(again).toEqual([]);
    expect(await size(A)).toBe(90);
    const [stored] = (await t.dataSource.query(`SELECT leaf_index, entry FROM audit.entries WHERE id = $1`, [rows[0]!.id])) as { leaf_index: string; entry: string }[];
    expect(stored).toEqual({ leaf_index: rows[0]!.leaf_index, entry: rows[0]!.entry });
  });

  it('stores awkward strings exactly through both appends (the locking first batch, then the one-statement one), absent fields as NULL', async () => {
    const OP = 'op_awkward';
    const awkward = (n: number) => ({
      id: `aud_awkward_${n}`,
      occurred_at: new Date(Date.UTC(2026, 10, 26, 5, 0, n)).toISOString(),
      operator_id: OP,
      member_id: `mem "quoted" \\ back\\slash ü ${n}`,
      ...(n % 2 ? { session_id: 'ses_{braces},[brackets]' } : {}),
      layer: 'proxy',
      action: 'credential.proxy',
      outcome: 'success',
      target: { service: 'github', method: 'GET', host: 'api.github.com', path: `/repos/"x"/\\y/😀/${n}` },
      duration_ms: n,
    });
    const first = await t.log.repo.appendBatch([0, 1].map((n) => ({ entry: awkward(n) as never })), finishEntry);
    const second = await t.log.repo.appendBatch([2, 3, 4].map((n) => ({ entry: awkward(n) as never })), finishEntry);
    expect([...first, ...second].map((a) => a.leafIndex)).toEqual([0, 1, 2, 3, 4]);
    const rows = (await t.dataSource.query(`SELECT leaf_index, entry, leaf_hash, member_id, agent_id, session_id, occurred_at FROM audit.entries WHERE operator_id = $1 ORDER BY leaf_index`, [OP])) as {
      leaf_index: string;
      entry: string;
      leaf_hash: Buffer;
      member_id: string;
      agent_id: string | null;
      session_id: string | null;
      occurred_at: Date;
    }[];
    expect(rows).toHaveLength(5);
    rows.forEach((r, n) => {
      const { canonical, leafHash } = finishEntry(awkward(n) as never, n);
      expect(r.entry).toBe(canonical);
      expect(r.leaf_hash.equals(leafHash)).toBe(true);
      expect(r.member_id).toBe(awkward(n).member_id);
      expect(r.agent_id).toBeNull();
      expect(r.session_id).toBe(n % 2 ? 'ses_{braces},[brackets]' : null);
      expect(new Date(r.occurred_at).toISOString()).toBe(awkward(n).occurred_at);
    });
  });

  it('appends an event holding a NUL, a lone surrogate or a pair its cut would split, as well-formed strings (Postgres text refuses them)', async () => {
    const OP = 'op_illformed';
    const event = {
      id: 'aud_illformed_1',
      occurred_at: new Date().toISOString(),
      operator_id: OP,
      // 127 units, then a pair the 128-unit cut would split.
      member_id: `${'m'.repeat(127)}😀`,
      agent_id: 'agt_\u0000nul',
      session_id: 'ses_\uD800lone',
      layer: 'proxy' as const,
      action: 'credential.proxy',
      outcome: 'success' as const,
      target: { path: '/x/\uDC00' },
      trace_id: `${'t'.repeat(63)}😀`,
    };
    const appended = await t.log.repo.appendBatch([{ entry: entryFromEvent(event) }], finishEntry);
    expect(appended).toHaveLength(1);
    const [row] = (await t.dataSource.query(`SELECT entry, member_id, agent_id, session_id FROM audit.entries WHERE operator_id = $1`, [OP])) as { entry: string; member_id: string; agent_id: string; session_id: string }[];
    const entry = JSON.parse(row!.entry) as Record<string, unknown>;
    expect(row!.entry).not.toMatch(/\\u0000|\\ud[89a-f]/i);
    expect(entry).toMatchObject({ member_id: 'm'.repeat(127), agent_id: 'agt_\uFFFDnul', session_id: 'ses_\uFFFDlone', target: { path: '/x/\uFFFD' }, trace_id: 't'.repeat(63) });
    expect([row!.member_id, row!.agent_id, row!.session_id]).toEqual([entry.member_id, entry.agent_id, entry.session_id]);
  });

  it('signs checkpoints in the C2SP format, writes the checkpoint event through the outbox, and proofs verify', async () => {
    const cp = await t.log.signNow(A);
    expect(cp.tree_size).toBe(90);
    expect(cp.note).toMatch(/^audit\.test\/audit\/op_alpha\/1\n90\n[A-Za-z0-9+/=]{44}\n\n\u2014 audit\.test\/audit [A-Za-z0-9+/=]+\n$/);
    const outbox = (await t.dataSource.query(`SELECT event FROM audit.outbox WHERE event = 'audit_checkpoint.signed'`)) as unknown[];
    expect(outbox.length).toBeGreaterThanOrEqual(1);
    const scope = readScope(admin(A));
    const row = (await t.log.list(scope, { limit: 1 })).items[0]!;
    const proof = await t.log.inclusionProof(scope, { entry_id: row.entry.id });
    expect(verifyInclusion(entryLeafHash(row.entry), proof.leaf_index, proof.tree_size, proof.hashes.map((h) => Buffer.from(h, 'base64')), Buffer.from(cp.root_hash, 'base64'))).toBe(true);
    const consistency = await t.log.consistencyProof(scope, { tree_size_1: 10, tree_size_2: 90 });
    expect(consistency.hashes.length).toBeGreaterThan(0);
    expect((await t.log.verifyEntry(scope, row.entry.id)).verdict).toBe('valid');
    const all = await exportLines(t, A);
    expect(verifyExportLines(all).ok).toBe(true);
    expect((await cliVerify(all)).code).toBe(0);
  });

  it('lists newest first with a cursor, and members see only their own actions', async () => {
    const scope = readScope(admin(A));
    const first = await t.log.list(scope, { limit: 50 });
    expect(first.items[0]!.leaf_index).toBe(89);
    const second = await t.log.list(scope, { limit: 50, cursor: first.next_cursor });
    expect(second.items).toHaveLength(40);
    expect(second.next_cursor).toBeUndefined();
    const mine = await t.log.list(readScope(member(A, 'mem_1')), { limit: 500 });
    expect(mine.items.length).toBeGreaterThan(0);
    expect(mine.items.every((i) => i.entry.member_id === 'mem_1')).toBe(true);
    const denied = await t.log.list(scope, { outcome: 'denied', limit: 500 });
    expect(denied.items.every((i) => i.entry.outcome === 'denied')).toBe(true);
  });

  it('proves in a tree another replica grew while a load of it was under way (the load read the smaller size)', async () => {
    const OP = 'op_sync';
    const ref = { operatorId: OP, treeId: 1 };
    const replica = new AuditLogRepository(t.dataSource);
    const entry = (n: number) => ({ entry: { id: `aud_sync_${String(n).padStart(4, '0')}`, occurred_at: new Date().toISOString(), operator_id: OP, layer: 'proxy', action: 'credential.proxy', outcome: 'success' } as never });
    await replica.appendBatch(Array.from({ length: 10 }, (_, n) => entry(n)), finishEntry);
    const read = t.log.repo.leafHashes.bind(t.log.repo);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reading = false;
    const spy = jest.spyOn(t.log.repo, 'leafHashes').mockImplementation(async (r, from, to) => {
      if (!reading) {
        reading = true;
        await gate;
      }
      return read(r, from, to);
    });
    try {
      // A load of the tree at 10 leaves waits for its leaves; meanwhile the other replica appends 10 more.
      const first = t.log.tree(ref);
      await waitFor(async () => reading);
      await replica.appendBatch(Array.from({ length: 10 }, (_, n) => entry(10 + n)), finishEntry);
      const proof = t.log.inclusionProof(readScope(admin(OP)), { leaf_index: 15, tree_size: 20 });
      await new Promise((r) => setTimeout(r, 300));
      release();
      expect((await first).size).toBeGreaterThanOrEqual(10);
      const p = await proof;
      const stored = (await t.dataSource.query(`SELECT leaf_hash FROM audit.entries WHERE operator_id = $1 ORDER BY leaf_index`, [OP])) as { leaf_hash: Buffer }[];
      expect(verifyInclusion(stored[15]!.leaf_hash, 15, 20, p.hashes.map((h) => Buffer.from(h, 'base64')), MerkleLevels.fromLeaves(stored.map((r) => r.leaf_hash)).root())).toBe(true);
    } finally {
      release();
      spy.mockRestore();
    }
  });

  it('refuses a since or until Postgres cannot read (year 0, a six-digit year) as a bad request, not a failure of its own', async () => {
    const scope = readScope(admin(A));
    // Both valid RFC 3339 / what the REST controller's Date makes of `since=275760-09-13`.
    for (const bad of ['0000-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', '-000001-01-01T00:00:00.000Z']) {
      await expect(t.log.list(scope, { since: bad })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
      await expect(t.log.list(scope, { until: bad })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    }
    expect((await t.log.list(scope, { since: '0001-01-01T00:00:00+00:00', until: '9999-12-31T23:59:59.999Z', limit: 500 })).items).toHaveLength(90);
  });

  it("never shows another operator's entries: absent from lists, 404 for proofs and verification", async () => {
    const scopeB = readScope(admin(B));
    const listed = await t.log.list(scopeB, { limit: 500 });
    expect(listed.items).toHaveLength(30);
    expect(listed.items.every((i) => i.entry.operator_id === B)).toBe(true);
    expect(listed.items.some((i) => ids.includes(i.entry.id))).toBe(false);
    await expect(t.log.inclusionProof(scopeB, { entry_id: ids[0]! })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(t.log.verifyEntry(scopeB, ids[0]!)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Filtering by another operator's member finds nothing either.
    expect((await t.log.list(scopeB, { member_id: 'mem_1', limit: 500 })).items.every((i) => i.entry.operator_id === B)).toBe(true);
    expect(() => readScope({ issuer: 'auth', kind: 'member', scopes: [] })).toThrow(StackError);
  });

  it('keeps no tree in memory for one that does not exist, lets only admins name another tree, and refuses a tree id beyond integer range', async () => {
    const trees = (t.log as unknown as { trees: Map<string, unknown> }).trees;
    const before = [...trees.keys()];
    const adminA = readScope(admin(A));
    for (const treeId of [2, 77, 2 ** 31 - 1]) await expect(t.log.consistencyProof(adminA, { tree_size_1: 0, tree_id: treeId })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(t.log.inclusionProof(adminA, { leaf_index: 0, tree_id: 77 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect([...trees.keys()]).toEqual(before);
    await expect(t.log.consistencyProof(adminA, { tree_size_1: 0, tree_id: 99_999_999_999 })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    // Others get their operator's live tree, by default or by its id, and no other.
    const mine = readScope(member(A, 'mem_1'));
    await expect(t.log.consistencyProof(mine, { tree_size_1: 0, tree_id: 2 })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await t.log.consistencyProof(mine, { tree_size_1: 10, tree_size_2: 90, tree_id: 1 })).toEqual(await t.log.consistencyProof(mine, { tree_size_1: 10, tree_size_2: 90 }));
    expect(await t.log.consistencyProof(adminA, { tree_size_1: 10, tree_size_2: 90, tree_id: 1 })).toMatchObject({ tree_id: 1, tree_size_2: 90 });
  });

  describe('tampering in Postgres is detected against the earlier checkpoint and named', () => {
    const at = async (leaf: number) => ((await t.dataSource.query(`SELECT id, entry, leaf_hash FROM audit.entries WHERE operator_id = $1 AND leaf_index = $2`, [A, leaf])) as { id: string; entry: string; leaf_hash: Buffer }[])[0]!;

    beforeAll(async () => {
      await t.log.signNow(A);
    });

    it('one field of one row changed', async () => {
      const victim = await at(10);
      await t.dataSource.query(`UPDATE audit.entries SET entry = replace(entry, '"action":"credential.proxy"', '"action":"credential.proxz"') WHERE id = $1`, [victim.id]);
      expect((await at(10)).entry).not.toBe(victim.entry);
      try {
        const result = verifyExportLines(await exportLines(t, A));
        expect(result.ok).toBe(false);
        expect(result.failure).toMatchObject({ leaf_index: 10, entry_id: victim.id });
        const cli = await cliVerify(await exportLines(t, A));
        expect(cli.code).toBe(1);
        expect(cli.out).toContain(victim.id);
        expect((await t.log.verifyEntry(readScope(admin(A)), victim.id)).verdict).toBe('invalid');
        // The whole-log check (stack_audit_verify): the roots fail without proofs, then the proofs name the entry.
        const exports = jest.spyOn(t.log, 'exportLines');
        try {
          expect(await t.log.verifyAll(A)).toMatchObject({ ok: false, failure: { leaf_index: 10, entry_id: victim.id } });
          expect(exports.mock.calls.map((c) => c[2])).toEqual([{ proofs: false }, { proofs: true }]);
        } finally {
          exports.mockRestore();
        }
      } finally {
        await t.dataSource.query(`UPDATE audit.entries SET entry = $2 WHERE id = $1`, [victim.id, victim.entry]);
      }
      expect(verifyExportLines(await exportLines(t, A)).ok).toBe(true);
      // A valid log is checked once, without proofs.
      const exports = jest.spyOn(t.log, 'exportLines');
      try {
        expect(await t.log.verifyAll(A)).toMatchObject({ ok: true });
        expect(exports.mock.calls.map((c) => c[2])).toEqual([{ proofs: false }]);
      } finally {
        exports.mockRestore();
      }
    });

    it('a row deleted', async () => {
      const victim = (await t.dataSource.query(`SELECT * FROM audit.entries WHERE operator_id = $1 AND leaf_index = 20`, [A])) as Record<string, unknown>[];
      const next = await at(21);
      await t.dataSource.query(`DELETE FROM audit.entries WHERE id = $1`, [victim[0]!.id]);
      try {
        const result = verifyExportLines(await exportLines(t, A));
        expect(result.ok).toBe(false);
        expect(result.failure).toMatchObject({ leaf_index: 20, entry_id: next.id });
        const cli = await cliVerify(await exportLines(t, A));
        expect(cli.code).toBe(1);
        expect(cli.out).toMatch(/leaf 20 .*missing/);
      } finally {
        const v = victim[0]!;
        await t.dataSource.query(
          `INSERT INTO audit.entries (id, operator_id, tree_id, leaf_index, entry, leaf_hash, occurred_at, appended_at, member_id, agent_id, passport_jti, session_id, action, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`,
          [v.id, v.operator_id, v.tree_id, v.leaf_index, v.entry, v.leaf_hash, v.occurred_at, v.appended_at, v.member_id, v.agent_id, v.passport_jti, v.session_id, v.action, v.outcome],
        );
      }
      expect(verifyExportLines(await exportLines(t, A)).ok).toBe(true);
    });

    it("a checkpoint's note swapped for one of another tree (same key, size and root)", async () => {
      const victim = await at(5);
      const cp = await t.log.latestCheckpoint(A, 1);
      // What the same key signed for another origin (say a tree that a retention period closed) over the same leaves.
      const foreign = signNote(formatCheckpoint({ origin: `${cp.origin.slice(0, -2)}/7`, treeSize: cp.tree_size, rootHash: Buffer.from(cp.root_hash, 'base64') }), t.log.signer);
      await t.dataSource.query(`UPDATE audit.checkpoints SET note = $3 WHERE operator_id = $1 AND tree_id = 1 AND tree_size = $2`, [A, cp.tree_size, foreign]);
      try {
        expect((await t.log.verifyEntry(readScope(admin(A)), victim.id)).verdict).toBe('invalid');
        expect(verifyExportLines(await exportLines(t, A)).ok).toBe(false);
      } finally {
        await t.dataSource.query(`UPDATE audit.checkpoints SET note = $3 WHERE operator_id = $1 AND tree_id = 1 AND tree_size = $2`, [A, cp.tree_size, cp.note]);
      }
      expect((await t.log.verifyEntry(readScope(admin(A)), victim.id)).verdict).toBe('valid');
    });

    it('two rows reordered', async () => {
      const [x, y] = [await at(30), await at(31)];
      await t.dataSource.transaction(async (m) => {
        await m.query(`UPDATE audit.entries SET leaf_index = -1 WHERE id = $1`, [x.id]);
        await m.query(`UPDATE audit.entries SET leaf_index = 30 WHERE id = $1`, [y.id]);
        await m.query(`UPDATE audit.entries SET leaf_index = 31 WHERE id = $1`, [x.id]);
      });
      try {
        const result = verifyExportLines(await exportLines(t, A));
        expect(result.ok).toBe(false);
        expect(result.failure).toMatchObject({ leaf_index: 30, entry_id: y.id });
        const cli = await cliVerify(await exportLines(t, A));
        expect(cli.code).toBe(1);
        expect(cli.out).toContain(y.id);
      } finally {
        await t.dataSource.transaction(async (m) => {
          await m.query(`UPDATE audit.entries SET leaf_index = -1 WHERE id = $1`, [x.id]);
          await m.query(`UPDATE audit.entries SET leaf_index = 31 WHERE id = $1`, [y.id]);
          await m.query(`UPDATE audit.entries SET leaf_index = 30 WHERE id = $1`, [x.id]);
        });
      }
      expect(verifyExportLines(await exportLines(t, A)).ok).toBe(true);
    });
  });

  it('exports exactly what the checkpoint it signs at export time covers: entries appended meanwhile wait for the next export', async () => {
    const OP = 'op_race';
    const replica = new AuditLogRepository(t.dataSource);
    const entry = (n: number) => ({ entry: { id: `aud_race_${String(n).padStart(4, '0')}`, occurred_at: new Date().toISOString(), operator_id: OP, layer: 'proxy', action: 'credential.proxy', outcome: 'success' } as never });
    await replica.appendBatch(Array.from({ length: 10 }, (_, n) => entry(n)), finishEntry);
    const read = t.log.repo.checkpoints.bind(t.log.repo);
    // Another replica appends 3 entries after the export signed its checkpoint, before it reads the rows.
    const spy = jest.spyOn(t.log.repo, 'checkpoints').mockImplementationOnce(async (ref) => {
      const cps = await read(ref);
      await replica.appendBatch([10, 11, 12].map(entry), finishEntry);
      return cps;
    });
    try {
      const lines = await exportLines(t, OP);
      const entries = lines.map((l) => JSON.parse(l) as { type: string; leaf_index?: number; inclusion?: unknown }).filter((l) => l.type === 'entry');
      expect(entries.map((e) => e.leaf_index)).toEqual(Array.from({ length: 10 }, (_, i) => i));
      expect(entries.every((e) => e.inclusion)).toBe(true);
      expect(verifyExportLines(lines)).toMatchObject({ ok: true, entries: 10, verified_tree_size: 10 });
      expect((await cliVerify(lines)).code).toBe(0);
    } finally {
      spy.mockRestore();
    }
    // The next export signs them and lists them.
    expect(verifyExportLines(await exportLines(t, OP))).toMatchObject({ ok: true, entries: 13, verified_tree_size: 13 });
  });

  // Declared last, and under an operator of its own: the reads it records are appended too, and must not move the counts above.
  it('answers a non-admin whole-log verify over the bus with NOT_FOUND, and refuses a caller without a member or agent id', async () => {
    const C = 'op_gamma';
    const handles = serveAuditCommands(t.kit, t.log);
    try {
      await t.bus.flush();
      const asker = t.bus.forService('mcp-gateway');
      await expect(asker.request(AuditVerifyCommand, {}, { caller: member(C, 'mem_1') })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await expect(asker.request(AuditVerifyCommand, {}, { caller: { issuer: 'passport', kind: 'agent', operator_id: C, agent_id: 'agt_1', scopes: ['stack:audit'] } })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      // A member token holding stack:services only reads nothing of the log, over the bus as over REST.
      const servicesOnly: CallerContext = { issuer: 'auth', kind: 'member', operator_id: C, member_id: 'mem_1', scopes: ['stack:services'] };
      for (const [command, req] of [
        [AuditListCommand, {}],
        [AuditVerifyCommand, { entry_id: 'aud_x' }],
        [AuditInclusionProofCommand, { entry_id: 'aud_x' }],
        [AuditConsistencyProofCommand, { tree_size_1: 0 }],
        [AuditLatestCheckpointCommand, {}],
        [AuditSignCheckpointCommand, {}],
      ] as const) {
        await expect(asker.request(command as typeof AuditListCommand, req as never, { caller: servicesOnly })).rejects.toMatchObject({ code: 'FORBIDDEN', message: expect.stringContaining('stack:audit') });
      }
      // With stack:audit the member reads (its own); an agent with its passport (no stack:* scope for the log) reads its own.
      await expect(asker.request(AuditListCommand, {}, { caller: { ...servicesOnly, scopes: ['stack:audit'] } })).resolves.toMatchObject({ items: expect.any(Array) });
      const passport: CallerContext = { issuer: 'passport', kind: 'agent', operator_id: C, member_id: 'mem_1', agent_id: 'agt_1', passport_jti: 'ppt_1', scopes: ['stack:services', 'stack:dropoffs'] };
      await expect(asker.request(AuditListCommand, {}, { caller: passport })).resolves.toMatchObject({ items: expect.any(Array) });
    } finally {
      await Promise.all(handles.map((h) => h.stop()));
    }
    expect(() => readScope({ issuer: 'auth', kind: 'member', operator_id: C, scopes: ['stack:audit'] })).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(() => readScope({ issuer: 'auth', kind: 'member', operator_id: C, member_id: 'mem_1', scopes: ['stack:services'] })).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(() => readScope({ issuer: 'passport', kind: 'agent', operator_id: C, scopes: ['stack:audit'] })).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
  });
});

describe('audit log: more at once than one batch holds (Postgres + NATS)', () => {
  let db: TestDatabase;
  let t: AuditTestKit;

  beforeAll(async () => {
    db = await createTestDatabase('audit_int');
    t = await startAuditTestKit({ databaseUrl: db.url, natsUrl: TEST_NATS_URL, prefix: uniqueName('aub') });
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await db?.drop();
  });

  it('appends 2,500 records published together (batches of at most 1,000, sharing an acknowledgement each) once each, numbered without a gap', async () => {
    const committed: string[] = [];
    const batchSizes: number[] = [];
    t.log.onCommitted = (ids) => {
      committed.push(...ids);
      batchSizes.push(ids.length);
    };
    const ids = await Promise.all(
      Array.from({ length: 2500 }, (_, i) => t.recorder.record({ caller: admin('op_gamma'), layer: 'proxy', action: 'credential.proxy', outcome: 'success', duration_ms: i })),
    );
    await waitFor(async () => ((await t.log.repo.head('op_gamma'))?.treeSize ?? 0) === 2500, 60_000);
    const rows = (await t.dataSource.query(`SELECT id, leaf_index FROM audit.entries WHERE operator_id = 'op_gamma' ORDER BY leaf_index`)) as { id: string; leaf_index: string }[];
    expect(rows.map((r) => Number(r.leaf_index))).toEqual(Array.from({ length: 2500 }, (_, i) => i));
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(ids));
    // Every commit reported its entries once; none held more than a batch.
    expect(committed.sort()).toEqual([...ids].sort());
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(1000);
    expect(batchSizes.length).toBeGreaterThanOrEqual(3);
    const tree = await t.log.tree({ operatorId: 'op_gamma', treeId: 1 });
    expect(tree.size).toBe(2500);
  }, 90_000);

  it('keeps the lower hashes of the last block only, and proves early entries from leaf hashes read back', async () => {
    const ref = { operatorId: 'op_gamma', treeId: 1 };
    const scope = readScope(admin('op_gamma'));
    const stored = (await t.dataSource.query(`SELECT leaf_hash FROM audit.entries WHERE operator_id = 'op_gamma' ORDER BY leaf_index`)) as { leaf_hash: Buffer }[];
    const whole = MerkleLevels.fromLeaves(stored.map((r) => r.leaf_hash));
    const tree = await t.log.tree(ref);
    expect(tree.blockSize).toBe(2 ** AUDIT_TREE_BLOCK_BITS);
    // The current root needs nothing from storage; a proof of leaf 5 needs its block's leaves.
    expect(tree.blocksFor((b) => tree.root(2500, b))).toEqual([]);
    expect(tree.blocksFor((b) => tree.inclusionProof(5, 2500, b))).toEqual([0]);
    const cp = await t.log.signNow('op_gamma');
    expect(cp.tree_size).toBe(2500);
    expect(Buffer.from(cp.root_hash, 'base64').equals(whole.root(2500))).toBe(true);
    for (const index of [0, 5, 1023, 1024, 2047, 2048, 2499]) {
      const proof = await t.log.inclusionProof(scope, { leaf_index: index, tree_size: 2500 });
      expect(Buffer.from(proof.leaf_hash, 'base64').equals(stored[index]!.leaf_hash)).toBe(true);
      expect(verifyInclusion(stored[index]!.leaf_hash, index, 2500, proof.hashes.map((h) => Buffer.from(h, 'base64')), whole.root(2500))).toBe(true);
    }
    // A past size cut inside an early block.
    const consistency = await t.log.consistencyProof(scope, { tree_size_1: 1500, tree_size_2: 2500 });
    expect(verifyConsistency(1500, 2500, consistency.hashes.map((h) => Buffer.from(h, 'base64')), whole.root(1500), whole.root(2500))).toBe(true);
    const early = await t.log.inclusionProof(scope, { leaf_index: 3, tree_size: 1100 });
    expect(verifyInclusion(stored[3]!.leaf_hash, 3, 1100, early.hashes.map((h) => Buffer.from(h, 'base64')), whole.root(1100))).toBe(true);
    expect(verifyExportLines(await exportLines(t, 'op_gamma')).ok).toBe(true);
  }, 60_000);

  it('proves right when appends complete the last block while a proof reads its leaves', async () => {
    const scope = readScope(admin('op_gamma'));
    const read = t.log.repo.leafHashes.bind(t.log.repo);
    let raced = false;
    const spy = jest.spyOn(t.log.repo, 'leafHashes').mockImplementation(async (ref, from, to) => {
      if (!raced) {
        raced = true;
        // While the proof waits for block 0, 600 more entries complete the block holding leaf 2499
        // (the tree's last when the proof began), whose lower hashes then leave memory: the proof
        // needs that block from storage too.
        await Promise.all(Array.from({ length: 600 }, () => t.recorder.record({ caller: admin('op_gamma'), layer: 'proxy', action: 'credential.proxy', outcome: 'success' })));
        await waitFor(async () => (await t.log.tree({ operatorId: 'op_gamma', treeId: 1 })).size >= 3100, 60_000);
      }
      return read(ref, from, to);
    });
    try {
      const proof = await t.log.inclusionProof(scope, { leaf_index: 5, tree_size: 2500 });
      expect(raced).toBe(true);
      const block = 2 ** AUDIT_TREE_BLOCK_BITS;
      expect(spy.mock.calls.map((c) => c[1])).toEqual(expect.arrayContaining([0, Math.floor(2499 / block) * block]));
      const stored = (await t.dataSource.query(`SELECT leaf_hash FROM audit.entries WHERE operator_id = 'op_gamma' AND leaf_index < 2500 ORDER BY leaf_index`)) as { leaf_hash: Buffer }[];
      const root = MerkleLevels.fromLeaves(stored.map((r) => r.leaf_hash)).root();
      expect(verifyInclusion(stored[5]!.leaf_hash, 5, 2500, proof.hashes.map((h) => Buffer.from(h, 'base64')), root)).toBe(true);
    } finally {
      spy.mockRestore();
    }
  }, 90_000);

  it('exports a log longer than one page of rows with every entry proven, each proof from the rows at hand', async () => {
    await Promise.all(Array.from({ length: 1100 }, () => t.recorder.record({ caller: admin('op_gamma'), layer: 'proxy', action: 'credential.proxy', outcome: 'success' })));
    await waitFor(async () => ((await t.log.repo.head('op_gamma'))?.treeSize ?? 0) >= 4200, 60_000);
    const read = jest.spyOn(t.log.repo, 'leafHashes');
    try {
      const lines = await exportLines(t, 'op_gamma');
      const entries = lines.map((l) => JSON.parse(l) as { type: string; leaf_index?: number; inclusion?: unknown }).filter((l) => l.type === 'entry');
      expect(entries.length).toBeGreaterThanOrEqual(4200);
      // Past the first page of 4,096 rows too, every entry up to the checkpoint carries its proof.
      expect(entries.filter((e) => !e.inclusion)).toEqual([]);
      expect(verifyExportLines(lines).ok).toBe(true);
      // The tree was read in pages; no proof needed a block read back on its own.
      expect(read.mock.calls.every((c) => c[2] - c[1] <= 4096)).toBe(true);
    } finally {
      read.mockRestore();
    }
  }, 90_000);

  it('refuses a proof whose block lost a leaf in storage, naming the integrity failure', async () => {
    const victim = (await t.dataSource.query(`SELECT id FROM audit.entries WHERE operator_id = 'op_gamma' AND leaf_index = 700`)) as { id: string }[];
    await t.dataSource.query(`DELETE FROM audit.entries WHERE id = $1`, [victim[0]!.id]);
    const err = await t.log.inclusionProof(readScope(admin('op_gamma')), { leaf_index: 701, tree_size: 2500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StackError);
    expect((err as StackError).code).toBe('INTERNAL_ERROR');
    // A proof of leaf 701 needs the leaves of its block, which held leaf 700.
    expect((err as StackError).message).toMatch(new RegExp(`integrity failure: leaves ${Math.floor(700 / 2 ** AUDIT_TREE_BLOCK_BITS) * 2 ** AUDIT_TREE_BLOCK_BITS}–`));
  });
});

