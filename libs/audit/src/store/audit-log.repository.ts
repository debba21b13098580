/**
 * Every read and write of the audit tables. A tree is (operator, tree id): each operator has one
 * live tree (its head) and the closed trees of earlier periods. An append numbers the batch's new
 * entries after their operator's head and moves the head, all or nothing: in one statement when
 * this instance knows where the head stands (checked by the statement itself), otherwise in a
 * transaction that locks the heads (sorted, so two replicas never deadlock) and drops ids already
 * in the log (appendBatch).
 */
import type { DataSource, EntityManager } from 'typeorm';

import type { AuditEntry } from '@stack/contracts';
import { runStatement } from '@stack/persistence';

export interface TreeRef {
  operatorId: string;
  treeId: number;
}

export interface PreparedEntry {
  /** Without leaf_index: the repository numbers it. */
  entry: Omit<AuditEntry, 'leaf_index'>;
}

export interface StoredRow {
  id: string;
  tree_id: number;
  leaf_index: number;
  entry: string;
  leaf_hash: Buffer;
}

export interface CheckpointRow {
  operator_id: string;
  tree_id: number;
  tree_size: number;
  root_hash: Buffer;
  note: string;
  signed_at: Date;
}

export interface Head extends TreeRef {
  treeSize: number;
  openedAt: Date;
}

export interface ListQuery {
  operatorId: string;
  memberId?: string;
  agentId?: string;
  passportJti?: string;
  sessionId?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
  /** Only entries before this position (the cursor), newest first. */
  before?: { treeId: number; leafIndex: number };
  /** Only entries after this position (follow mode), oldest first. */
  after?: { treeId: number; leafIndex: number };
  limit: number;
}

/** A row as appended: its tree, index and leaf hash (as stored, so the caller need not hash again). */
export interface AppendedLeaf extends TreeRef {
  id: string;
  leafIndex: number;
  leafHash: Buffer;
}

type Raw<T> = { [K in keyof T]: T[K] extends number ? string | number : T[K] };
const rowOf = (r: Raw<StoredRow>): StoredRow => ({ ...r, tree_id: Number(r.tree_id), leaf_index: Number(r.leaf_index) });
const cpOf = (r: Raw<CheckpointRow>): CheckpointRow => ({ ...r, tree_id: Number(r.tree_id), tree_size: Number(r.tree_size) });
const ROW = 'id, tree_id, leaf_index, entry, leaf_hash';
const CP = 'operator_id, tree_id, tree_size, root_hash, note, signed_at';

/** One entry as a json_to_recordset row of the appends (`op` and `tree` only in the locking append). */
interface EntryRow {
  id: string;
  op?: string;
  tree?: number;
  idx: number;
  entry: string;
  hash: string;
  at: string;
  mem?: string;
  agt?: string;
  ppt?: string;
  ses?: string;
  act: string;
  out: string;
}

/** The recordset columns of an EntryRow, as the appends read them. */
const ROW_COLUMNS = 'id text, idx bigint, entry text, hash text, at timestamptz, mem text, agt text, ppt text, ses text, act text, out text';

export class AuditLogRepository {
  constructor(private readonly ds: DataSource) {}

  /** Where each operator's live tree stood after this instance's last append (a hint: checked by every fast append). */
  private readonly knownHeads = new Map<string, { treeId: number; size: number }>();

  /**
   * Appends a batch. `finish(entry, leafIndex)` returns the canonical JSON and leaf hash of the
   * entry at that index. Returns what was appended (duplicates are left out).
   *
   * Fast path, per operator whose head this instance knows: one autocommit statement moves the
   * head from the size it expects and inserts the entries numbered after it — only if the head is
   * still there and none of the ids is already in the log (its primary key); otherwise it changes nothing. That is
   * one statement instead of seven and no transaction held across round trips (the embedded
   * Postgres runs one transaction at a time for the whole process). Slow path — an unknown
   * operator, a head another replica or a retention close moved, a redelivered id — the locking
   * transaction below, which also teaches the fast path the new head.
   */
  async appendBatch(entries: readonly PreparedEntry[], finish: (entry: PreparedEntry['entry'], leafIndex: number) => { canonical: string; leafHash: Buffer }): Promise<AppendedLeaf[]> {
    const fresh = new Map<string, PreparedEntry>();
    for (const e of entries) if (!fresh.has(e.entry.id)) fresh.set(e.entry.id, e);
    const byOperator = new Map<string, PreparedEntry[]>();
    for (const e of fresh.values()) {
      const list = byOperator.get(e.entry.operator_id);
      if (list) list.push(e);
      else byOperator.set(e.entry.operator_id, [e]);
    }
    // Operators' trees are independent: their one-statement appends run side by side.
    const fast = await Promise.all(
      [...byOperator].map(async ([operatorId, list]) => {
        const head = this.knownHeads.get(operatorId);
        return { list, done: head ? await this.appendFast(operatorId, head, list, finish) : undefined };
      }),
    );
    const appended = fast.flatMap((f) => f.done ?? []);
    const slow = fast.flatMap((f) => (f.done ? [] : f.list));
    if (slow.length) appended.push(...(await this.appendLocked(slow, finish)));
    return appended;
  }

  private async appendFast(
    operatorId: string,
    head: { treeId: number; size: number },
    list: readonly PreparedEntry[],
    finish: (entry: PreparedEntry['entry'], leafIndex: number) => { canonical: string; leafHash: Buffer },
  ): Promise<AppendedLeaf[] | undefined> {
    const { rows: entryRows, appended } = this.prepare(list, head.treeId, head.size, finish);
    const next = head.size + list.length;
    let inserted: number;
    try {
      const { rows } = await runStatement<{ n: number }>(
        this.ds,
        `WITH moved AS (
           UPDATE audit.heads SET tree_size = $4
           WHERE operator_id = $1 AND tree_id = $2 AND tree_size = $3
           RETURNING operator_id
         ), ins AS (
           INSERT INTO audit.entries (id, operator_id, tree_id, leaf_index, entry, leaf_hash, occurred_at, member_id, agent_id, passport_jti, session_id, action, outcome)
           SELECT id, $1, $2, idx, entry, decode(hash, 'hex'), at, mem, agt, ppt, ses, act, out
           FROM json_to_recordset($5::json) AS t(${ROW_COLUMNS})
           WHERE EXISTS (SELECT 1 FROM moved)
           RETURNING 1
         )
         SELECT count(*)::int AS n FROM ins`,
        [operatorId, head.treeId, head.size, next, JSON.stringify(entryRows)],
      );
      inserted = Number(rows[0]?.n ?? 0);
    } catch (err) {
      // An id already in the log (a redelivery, or a concurrent append of the same id) breaks the
      // primary key: the statement changes nothing, and the locking path, which drops known ids,
      // sorts it out. The key check is the only one: looking the ids up first cost a second probe
      // of the same index per entry.
      if ((err as { code?: string }).code !== '23505') throw err;
      inserted = 0;
    }
    if (inserted !== list.length) {
      this.knownHeads.delete(operatorId);
      return undefined;
    }
    this.knownHeads.set(operatorId, { treeId: head.treeId, size: next });
    return appended;
  }

  /** The locking append: heads locked (sorted, so two replicas never deadlock), known ids dropped, the rest numbered after the heads. */
  private async appendLocked(entries: readonly PreparedEntry[], finish: (entry: PreparedEntry['entry'], leafIndex: number) => { canonical: string; leafHash: Buffer }): Promise<AppendedLeaf[]> {
    const result = await this.ds.transaction(async (m) => {
      const ids = entries.map((e) => e.entry.id);
      const existing = new Set(((await m.query(`SELECT id FROM audit.entries WHERE id = ANY($1::text[])`, [ids])) as { id: string }[]).map((r) => r.id));
      const byOperator = new Map<string, PreparedEntry[]>();
      for (const e of entries) {
        if (existing.has(e.entry.id)) continue;
        const list = byOperator.get(e.entry.operator_id) ?? [];
        list.push(e);
        byOperator.set(e.entry.operator_id, list);
      }
      const operators = [...byOperator.keys()].sort();
      if (!operators.length) return { appended: [] as AppendedLeaf[], heads: [] as { operatorId: string; treeId: number; size: number }[] };
      await m.query(`INSERT INTO audit.heads (operator_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [operators]);
      const heads = (await m.query(`SELECT operator_id, tree_id, tree_size FROM audit.heads WHERE operator_id = ANY($1::text[]) ORDER BY operator_id FOR UPDATE`, [operators])) as {
        operator_id: string;
        tree_id: number;
        tree_size: string;
      }[];
      const all: AppendedLeaf[] = [];
      const moved: { operatorId: string; treeId: number; size: number }[] = [];
      const rowsAll: EntryRow[] = [];
      for (const h of heads) {
        const list = byOperator.get(h.operator_id)!;
        const start = Number(h.tree_size);
        const { rows, appended } = this.prepare(list, Number(h.tree_id), start, finish);
        for (const r of rows) rowsAll.push({ ...r, op: h.operator_id, tree: Number(h.tree_id) });
        all.push(...appended);
        moved.push({ operatorId: h.operator_id, treeId: Number(h.tree_id), size: start + list.length });
      }
      await m.query(
        `INSERT INTO audit.entries (id, operator_id, tree_id, leaf_index, entry, leaf_hash, occurred_at, member_id, agent_id, passport_jti, session_id, action, outcome)
         SELECT id, op, tree, idx, entry, decode(hash, 'hex'), at, mem, agt, ppt, ses, act, out
         FROM json_to_recordset($1::json) AS t(op text, tree int, ${ROW_COLUMNS})`,
        [JSON.stringify(rowsAll)],
      );
      await m.query(`UPDATE audit.heads h SET tree_size = t.size FROM unnest($1::text[], $2::bigint[]) AS t(op, size) WHERE h.operator_id = t.op`, [moved.map((h) => h.operatorId), moved.map((h) => h.size)]);
      return { appended: all, heads: moved };
    });
    // Committed: the fast path may continue from here.
    for (const h of result.heads) this.knownHeads.set(h.operatorId, { treeId: h.treeId, size: h.size });
    return result.appended;
  }

  /**
   * One operator's entries as insert rows, numbered from `start`, with what they become. The rows
   * go to the database as one JSON text (JSON.stringify, native) read by json_to_recordset, not as
   * eleven arrays: the driver quotes array elements one by one in JavaScript, which for the
   * canonical JSON of every entry (all quotes) cost more than the rest of the append.
   */
  private prepare(
    list: readonly PreparedEntry[],
    treeId: number,
    start: number,
    finish: (entry: PreparedEntry['entry'], leafIndex: number) => { canonical: string; leafHash: Buffer },
  ): { rows: EntryRow[]; appended: AppendedLeaf[] } {
    const rows: EntryRow[] = [];
    const appended: AppendedLeaf[] = [];
    let next = start;
    for (const e of list) {
      const { canonical, leafHash } = finish(e.entry, next);
      const x = e.entry;
      // Absent fields stay absent: JSON.stringify leaves them out and json_to_recordset reads NULL.
      rows.push({ id: x.id, idx: next, entry: canonical, hash: leafHash.toString('hex'), at: x.occurred_at, mem: x.member_id, agt: x.agent_id, ppt: x.passport_jti, ses: x.session_id, act: x.action, out: x.outcome });
      appended.push({ id: x.id, operatorId: x.operator_id, treeId, leafIndex: next, leafHash });
      next += 1;
    }
    return { rows, appended };
  }

  async head(operatorId: string): Promise<Head | undefined> {
    const rows = (await this.ds.query(`SELECT operator_id, tree_id, tree_size, opened_at FROM audit.heads WHERE operator_id = $1`, [operatorId])) as { operator_id: string; tree_id: number; tree_size: string; opened_at: Date }[];
    const r = rows[0];
    return r ? { operatorId: r.operator_id, treeId: Number(r.tree_id), treeSize: Number(r.tree_size), openedAt: new Date(r.opened_at) } : undefined;
  }

  /** The size of a tree: the head's for the live tree, the recorded final size for a closed one. */
  async treeSize(tree: TreeRef): Promise<number> {
    const rows = (await this.ds.query(
      `SELECT tree_size FROM audit.heads WHERE operator_id = $1 AND tree_id = $2
       UNION ALL SELECT tree_size FROM audit.closed_trees WHERE operator_id = $1 AND tree_id = $2`,
      [tree.operatorId, tree.treeId],
    )) as { tree_size: string }[];
    return rows.length ? Number(rows[0]!.tree_size) : 0;
  }

  /** Whether the tree is live or closed and not yet dropped. */
  async hasTree(tree: TreeRef): Promise<boolean> {
    const rows = (await this.ds.query(
      `SELECT 1 FROM audit.heads WHERE operator_id = $1 AND tree_id = $2
       UNION ALL SELECT 1 FROM audit.closed_trees WHERE operator_id = $1 AND tree_id = $2 AND dropped_at IS NULL`,
      [tree.operatorId, tree.treeId],
    )) as unknown[];
    return rows.length > 0;
  }

  async heads(): Promise<Head[]> {
    const rows = (await this.ds.query(`SELECT operator_id, tree_id, tree_size, opened_at FROM audit.heads`)) as { operator_id: string; tree_id: number; tree_size: string; opened_at: Date }[];
    return rows.map((r) => ({ operatorId: r.operator_id, treeId: Number(r.tree_id), treeSize: Number(r.tree_size), openedAt: new Date(r.opened_at) }));
  }

  /** Live trees that grew since their last checkpoint, with the size to sign. */
  async unsignedHeads(): Promise<(TreeRef & { treeSize: number })[]> {
    const rows = (await this.ds.query(
      `SELECT h.operator_id, h.tree_id, h.tree_size FROM audit.heads h
       WHERE h.tree_size > COALESCE((SELECT max(c.tree_size) FROM audit.checkpoints c WHERE c.operator_id = h.operator_id AND c.tree_id = h.tree_id), 0)`,
    )) as { operator_id: string; tree_id: number; tree_size: string }[];
    return rows.map((r) => ({ operatorId: r.operator_id, treeId: Number(r.tree_id), treeSize: Number(r.tree_size) }));
  }

  /**
   * Closes the live tree if it still has exactly `size` leaves (its checkpoint at that size is
   * signed): records it as closed and opens the next, empty one. Nothing of the tree changes.
   */
  async closeTree(head: Head): Promise<boolean> {
    return this.ds.transaction(async (m) => {
      const moved = await runStatement(m, `UPDATE audit.heads SET tree_id = tree_id + 1, tree_size = 0, opened_at = now() WHERE operator_id = $1 AND tree_id = $2 AND tree_size = $3 RETURNING operator_id`, [
        head.operatorId,
        head.treeId,
        head.treeSize,
      ]);
      if (!moved.rows.length) return false;
      await m.query(`INSERT INTO audit.closed_trees (operator_id, tree_id, tree_size, opened_at) VALUES ($1, $2, $3, $4)`, [head.operatorId, head.treeId, head.treeSize, head.openedAt]);
      return true;
    });
  }

  /** Drops the entries of trees closed before `closedBefore`, keeping each tree's last checkpoint. Returns the trees dropped. */
  async dropClosedTrees(closedBefore: Date): Promise<TreeRef[]> {
    const due = (await this.ds.query(`SELECT operator_id, tree_id FROM audit.closed_trees WHERE dropped_at IS NULL AND closed_at < $1`, [closedBefore])) as { operator_id: string; tree_id: number }[];
    for (const t of due) {
      await this.ds.transaction(async (m) => {
        await m.query(`DELETE FROM audit.entries WHERE operator_id = $1 AND tree_id = $2`, [t.operator_id, t.tree_id]);
        await m.query(`DELETE FROM audit.checkpoints WHERE operator_id = $1 AND tree_id = $2 AND tree_size < (SELECT max(tree_size) FROM audit.checkpoints WHERE operator_id = $1 AND tree_id = $2)`, [t.operator_id, t.tree_id]);
        await m.query(`UPDATE audit.closed_trees SET dropped_at = now() WHERE operator_id = $1 AND tree_id = $2`, [t.operator_id, t.tree_id]);
      });
    }
    return due.map((t) => ({ operatorId: t.operator_id, treeId: Number(t.tree_id) }));
  }

  /** Leaf hashes in leaf order from `from` (inclusive) to `to` (exclusive); rows as stored, gaps included. */
  async leafHashes(tree: TreeRef, from: number, to: number): Promise<{ leaf_index: number; leaf_hash: Buffer }[]> {
    const rows = (await this.ds.query(`SELECT leaf_index, leaf_hash FROM audit.entries WHERE operator_id = $1 AND tree_id = $2 AND leaf_index >= $3 AND leaf_index < $4 ORDER BY leaf_index`, [
      tree.operatorId,
      tree.treeId,
      from,
      to,
    ])) as { leaf_index: string; leaf_hash: Buffer }[];
    return rows.map((r) => ({ leaf_index: Number(r.leaf_index), leaf_hash: r.leaf_hash }));
  }

  async rows(tree: TreeRef, from: number, limit: number): Promise<StoredRow[]> {
    const rows = (await this.ds.query(`SELECT ${ROW} FROM audit.entries WHERE operator_id = $1 AND tree_id = $2 AND leaf_index >= $3 ORDER BY leaf_index LIMIT $4`, [tree.operatorId, tree.treeId, from, limit])) as Raw<StoredRow>[];
    return rows.map(rowOf);
  }

  async byId(operatorId: string, id: string): Promise<StoredRow | undefined> {
    const rows = (await this.ds.query(`SELECT ${ROW} FROM audit.entries WHERE operator_id = $1 AND id = $2`, [operatorId, id])) as Raw<StoredRow>[];
    return rows[0] ? rowOf(rows[0]) : undefined;
  }

  async list(q: ListQuery): Promise<StoredRow[]> {
    const where = ['operator_id = $1'];
    const params: unknown[] = [q.operatorId];
    const add = (sql: string, ...v: unknown[]) => {
      let out = sql;
      for (const value of v) {
        params.push(value);
        out = out.replace('?', `$${params.length}`);
      }
      where.push(out);
    };
    if (q.memberId) add('member_id = ?', q.memberId);
    if (q.agentId) add('agent_id = ?', q.agentId);
    if (q.passportJti) add('passport_jti = ?', q.passportJti);
    if (q.sessionId) add('session_id = ?', q.sessionId);
    if (q.action) add('action = ?', q.action);
    if (q.outcome) add('outcome = ?', q.outcome);
    if (q.since) add('occurred_at >= ?::timestamptz', q.since);
    if (q.until) add('occurred_at < ?::timestamptz', q.until);
    if (q.before) add('(tree_id, leaf_index) < (?::int, ?::bigint)', q.before.treeId, q.before.leafIndex);
    if (q.after) add('(tree_id, leaf_index) > (?::int, ?::bigint)', q.after.treeId, q.after.leafIndex);
    params.push(q.limit);
    const order = q.after ? 'ASC' : 'DESC';
    const rows = (await this.ds.query(`SELECT ${ROW} FROM audit.entries WHERE ${where.join(' AND ')} ORDER BY tree_id ${order}, leaf_index ${order} LIMIT $${params.length}`, params)) as Raw<StoredRow>[];
    return rows.map(rowOf);
  }

  /** Inserts a checkpoint (once per size: replicas sign the same bytes) and runs `then` in the same transaction when it is new. */
  async saveCheckpoint(cp: Omit<CheckpointRow, 'signed_at'>, then: (m: EntityManager, signedAt: Date) => Promise<unknown>): Promise<boolean> {
    return this.ds.transaction(async (m) => {
      const rows = (await m.query(`INSERT INTO audit.checkpoints (operator_id, tree_id, tree_size, root_hash, note) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING signed_at`, [
        cp.operator_id,
        cp.tree_id,
        cp.tree_size,
        cp.root_hash,
        cp.note,
      ])) as { signed_at: Date }[];
      if (!rows.length) return false;
      await then(m, rows[0]!.signed_at);
      return true;
    });
  }

  async checkpoints(tree: TreeRef): Promise<CheckpointRow[]> {
    const rows = (await this.ds.query(`SELECT ${CP} FROM audit.checkpoints WHERE operator_id = $1 AND tree_id = $2 ORDER BY tree_size`, [tree.operatorId, tree.treeId])) as Raw<CheckpointRow>[];
    return rows.map(cpOf);
  }

  /** The latest checkpoint of a tree, or (no tree given) of the operator's newest tree that has one. */
  async latestCheckpoint(operatorId: string, treeId?: number): Promise<CheckpointRow | undefined> {
    const rows = (
      treeId === undefined
        ? await this.ds.query(`SELECT ${CP} FROM audit.checkpoints WHERE operator_id = $1 ORDER BY tree_id DESC, tree_size DESC LIMIT 1`, [operatorId])
        : await this.ds.query(`SELECT ${CP} FROM audit.checkpoints WHERE operator_id = $1 AND tree_id = $2 ORDER BY tree_size DESC LIMIT 1`, [operatorId, treeId])
    ) as Raw<CheckpointRow>[];
    return rows[0] ? cpOf(rows[0]) : undefined;
  }
}
