/**
 * Every read and write of the audit tables. A tree is (operator, tree id): each operator has one
 * live tree (its head) and the closed trees of earlier periods. Appends run in one transaction per
 * batch: lock the heads of the batch's operators (sorted, so two replicas never deadlock), drop
 * ids already in the log, number the rest after the head, insert them in one statement, move the
 * heads.
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

export class AuditLogRepository {
  constructor(private readonly ds: DataSource) {}

  /**
   * Appends in one transaction. `finish(entry, leafIndex)` returns the canonical JSON and leaf hash
   * of the entry at that index. Returns what was appended (duplicates are left out).
   */
  async appendBatch(entries: readonly PreparedEntry[], finish: (entry: PreparedEntry['entry'], leafIndex: number) => { canonical: string; leafHash: Buffer }): Promise<AppendedLeaf[]> {
    return this.ds.transaction(async (m) => {
      const ids = [...new Set(entries.map((e) => e.entry.id))];
      const existing = new Set(((await m.query(`SELECT id FROM audit.entries WHERE id = ANY($1::text[])`, [ids])) as { id: string }[]).map((r) => r.id));
      const fresh = new Map<string, PreparedEntry>();
      for (const e of entries) if (!existing.has(e.entry.id) && !fresh.has(e.entry.id)) fresh.set(e.entry.id, e);
      if (!fresh.size) return [];
      const byOperator = new Map<string, PreparedEntry[]>();
      for (const e of fresh.values()) {
        const list = byOperator.get(e.entry.operator_id) ?? [];
        list.push(e);
        byOperator.set(e.entry.operator_id, list);
      }
      const operators = [...byOperator.keys()].sort();
      await m.query(`INSERT INTO audit.heads (operator_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [operators]);
      const heads = (await m.query(`SELECT operator_id, tree_id, tree_size FROM audit.heads WHERE operator_id = ANY($1::text[]) ORDER BY operator_id FOR UPDATE`, [operators])) as {
        operator_id: string;
        tree_id: number;
        tree_size: string;
      }[];
      const cols: Record<string, unknown[]> = { id: [], op: [], tree: [], idx: [], entry: [], hash: [], at: [], mem: [], agt: [], ppt: [], ses: [], act: [], out: [] };
      const appended: AppendedLeaf[] = [];
      const sizes: number[] = [];
      for (const h of heads) {
        let next = Number(h.tree_size);
        for (const e of byOperator.get(h.operator_id)!) {
          const { canonical, leafHash } = finish(e.entry, next);
          const x = e.entry;
          cols.id!.push(x.id);
          cols.op!.push(x.operator_id);
          cols.tree!.push(h.tree_id);
          cols.idx!.push(next);
          cols.entry!.push(canonical);
          cols.hash!.push(leafHash.toString('hex'));
          cols.at!.push(x.occurred_at);
          cols.mem!.push(x.member_id ?? null);
          cols.agt!.push(x.agent_id ?? null);
          cols.ppt!.push(x.passport_jti ?? null);
          cols.ses!.push(x.session_id ?? null);
          cols.act!.push(x.action);
          cols.out!.push(x.outcome);
          appended.push({ id: x.id, operatorId: x.operator_id, treeId: Number(h.tree_id), leafIndex: next, leafHash });
          next += 1;
        }
        sizes.push(next);
      }
      await m.query(
        `INSERT INTO audit.entries (id, operator_id, tree_id, leaf_index, entry, leaf_hash, occurred_at, member_id, agent_id, passport_jti, session_id, action, outcome)
         SELECT id, op, tree, idx, entry, decode(hash, 'hex'), at, mem, agt, ppt, ses, act, out
         FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
           AS t(id, op, tree, idx, entry, hash, at, mem, agt, ppt, ses, act, out)`,
        [cols.id, cols.op, cols.tree, cols.idx, cols.entry, cols.hash, cols.at, cols.mem, cols.agt, cols.ppt, cols.ses, cols.act, cols.out],
      );
      await m.query(`UPDATE audit.heads h SET tree_size = t.size FROM unnest($1::text[], $2::bigint[]) AS t(op, size) WHERE h.operator_id = t.op`, [heads.map((h) => h.operator_id), sizes]);
      return appended;
    });
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
