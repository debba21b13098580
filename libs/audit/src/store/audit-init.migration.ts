/**
 * The audit schema: entries (the canonical JSON that was hashed, its leaf hash and its place in
 * its operator's tree), each operator's live tree and its size (the row an appending batch locks,
 * so one order per operator holds across replicas), the signed checkpoints, and the closed trees
 * (one per retention period; dropped whole after the retention time, their last checkpoint kept).
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AuditInit1764300000000 implements MigrationInterface {
  readonly name = 'AuditInit1764300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE audit.entries (
        id           text PRIMARY KEY,
        operator_id  text NOT NULL,
        tree_id      integer NOT NULL,
        leaf_index   bigint NOT NULL,
        entry        text NOT NULL,
        leaf_hash    bytea NOT NULL,
        occurred_at  timestamptz NOT NULL,
        appended_at  timestamptz NOT NULL DEFAULT now(),
        member_id    text,
        agent_id     text,
        passport_jti text,
        session_id   text,
        action       text NOT NULL,
        outcome      text NOT NULL
      )`);
    // The tree order, and the newest-first listing.
    await q.query(`CREATE UNIQUE INDEX entries_tree_leaf ON audit.entries (operator_id, tree_id, leaf_index)`);
    await q.query(`CREATE INDEX entries_operator_member ON audit.entries (operator_id, member_id, tree_id, leaf_index)`);
    await q.query(`CREATE INDEX entries_operator_agent ON audit.entries (operator_id, agent_id, tree_id, leaf_index)`);
    await q.query(`
      CREATE TABLE audit.heads (
        operator_id text PRIMARY KEY,
        tree_id     integer NOT NULL DEFAULT 1,
        tree_size   bigint NOT NULL DEFAULT 0,
        opened_at   timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE audit.checkpoints (
        operator_id text NOT NULL,
        tree_id     integer NOT NULL,
        tree_size   bigint NOT NULL,
        root_hash   bytea NOT NULL,
        note        text NOT NULL,
        signed_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (operator_id, tree_id, tree_size)
      )`);
    await q.query(`
      CREATE TABLE audit.closed_trees (
        operator_id text NOT NULL,
        tree_id     integer NOT NULL,
        tree_size   bigint NOT NULL,
        opened_at   timestamptz NOT NULL,
        closed_at   timestamptz NOT NULL DEFAULT now(),
        dropped_at  timestamptz,
        PRIMARY KEY (operator_id, tree_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE audit.closed_trees`);
    await q.query(`DROP TABLE audit.checkpoints`);
    await q.query(`DROP TABLE audit.heads`);
    await q.query(`DROP TABLE audit.entries`);
  }
}
