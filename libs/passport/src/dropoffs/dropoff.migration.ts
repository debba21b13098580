/**
 * Drop-offs: one row per hand-off. The payload lives only as `ciphertext` (envelope-encrypted,
 * its own data key, operator and id bound as additional data) between deposit and collection or
 * expiry; both set it to NULL in the same statement that changes the status, so a collected or
 * expired row keeps its metadata and never its payload.
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from '@stack/persistence';

export class PassportDropoffs1764900000000 implements MigrationInterface {
  readonly name = 'PassportDropoffs1764900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const t = qualifiedTable(schemaOf(queryRunner), 'dropoffs');
    await queryRunner.query(`
      CREATE TABLE ${t} (
        id                  text PRIMARY KEY,
        operator_id         text NOT NULL,
        status              text NOT NULL CHECK (status IN ('created', 'deposited', 'collected', 'expired')),
        to_agents           jsonb NOT NULL,
        schema_json         text NOT NULL,
        schema_hash         text NOT NULL,
        created_by_member   text,
        created_by_agent    text,
        created_by_client   text,
        creator_key         text NOT NULL,
        ciphertext          jsonb,
        payload_bytes       integer,
        created_at          timestamptz NOT NULL DEFAULT now(),
        expires_at          timestamptz NOT NULL,
        deposited_at        timestamptz,
        collected_at        timestamptz,
        collected_by        text,
        CHECK ((status = 'deposited') = (ciphertext IS NOT NULL))
      )`);
    await queryRunner.query(`CREATE INDEX dropoffs_open_by_expiry ON ${t} (expires_at) WHERE status IN ('created', 'deposited')`);
    await queryRunner.query(`CREATE INDEX dropoffs_operator ON ${t} (operator_id, created_at)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE ${qualifiedTable(schemaOf(queryRunner), 'dropoffs')}`);
  }
}

/**
 * Drops `dropoffs_operator (operator_id, created_at)`: no query reads through it, and every
 * deposit and collection wrote it a new entry (their updates cannot be HOT: the status is in the
 * open-drop-off index's predicate). In the embedded Postgres, which never vacuums, those entries
 * made each deposit and collection slower as the table grew: on 2 cores a deposit went from about
 * 0.4 ms to 1 ms over 3,000 hand-offs with the index, and stayed near 0.15 ms without it.
 */
export class PassportDropoffsUnusedIndex1765000000000 implements MigrationInterface {
  readonly name = 'PassportDropoffsUnusedIndex1765000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS ${qualifiedTable(schemaOf(queryRunner), 'dropoffs_operator')}`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaOf(queryRunner);
    await queryRunner.query(`CREATE INDEX dropoffs_operator ON ${qualifiedTable(schema, 'dropoffs')} (operator_id, created_at)`);
  }
}
