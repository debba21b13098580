/**
 * The first migration of every service schema: the transactional outbox and the inbox of
 * idempotent consumers. The schema comes from the data source running it, so one class
 * serves all six services.
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from './sql';

export class StackFoundation1764000000000 implements MigrationInterface {
  // Explicit, so a minifier renaming the class cannot change what is recorded as applied.
  readonly name = 'StackFoundation1764000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaOf(queryRunner);
    const outbox = qualifiedTable(schema, 'outbox');
    const inbox = qualifiedTable(schema, 'inbox');
    await queryRunner.query(`
      CREATE TABLE ${outbox} (
        id          text PRIMARY KEY,
        seq         bigserial NOT NULL,
        event       text NOT NULL,
        payload     jsonb NOT NULL,
        headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at  timestamptz NOT NULL DEFAULT now(),
        sent_at     timestamptz,
        failed_at   timestamptz,
        last_error  text
      )`);
    // What the relay scans: small, because sent rows leave it at once.
    await queryRunner.query(`CREATE INDEX outbox_unsent_seq_idx ON ${outbox} (seq) WHERE sent_at IS NULL AND failed_at IS NULL`);
    // What pruning scans.
    await queryRunner.query(`CREATE INDEX outbox_sent_at_idx ON ${outbox} (sent_at) WHERE sent_at IS NOT NULL`);
    await queryRunner.query(`
      CREATE TABLE ${inbox} (
        consumer      text NOT NULL,
        message_id    text NOT NULL,
        processed_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, message_id)
      )`);
    await queryRunner.query(`CREATE INDEX inbox_processed_at_idx ON ${inbox} (processed_at)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaOf(queryRunner);
    await queryRunner.query(`DROP TABLE ${qualifiedTable(schema, 'inbox')}`);
    await queryRunner.query(`DROP TABLE ${qualifiedTable(schema, 'outbox')}`);
  }
}
