/**
 * `passports.refreshed_from`: the jti a passport was refreshed from. A refreshed passport has a
 * new jti and keeps its chain, so revoking a jti also revokes the passports refreshed from it,
 * found through this column (PassportService.revoke).
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from '@stack/persistence';

export class PassportLineage1765100000000 implements MigrationInterface {
  readonly name = 'PassportLineage1765100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const t = qualifiedTable(schemaOf(queryRunner), 'passports');
    await queryRunner.query(`ALTER TABLE ${t} ADD COLUMN refreshed_from text`);
    await queryRunner.query(`CREATE INDEX passports_refreshed_from_idx ON ${t} (refreshed_from) WHERE refreshed_from IS NOT NULL`);
    // Revoking an agent's passports reads them by agent; a refresh checks its lineage's jti revocations.
    await queryRunner.query(`CREATE INDEX passports_agent_expires_idx ON ${t} (agent_id, expires_at)`);
    await queryRunner.query(`CREATE INDEX revocations_value_idx ON ${qualifiedTable(schemaOf(queryRunner), 'revocations')} (value)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaOf(queryRunner);
    await queryRunner.query(`DROP INDEX ${qualifiedTable(schema, 'revocations_value_idx')}`);
    await queryRunner.query(`DROP INDEX ${qualifiedTable(schema, 'passports_agent_expires_idx')}`);
    await queryRunner.query(`DROP INDEX ${qualifiedTable(schema, 'passports_refreshed_from_idx')}`);
    await queryRunner.query(`ALTER TABLE ${qualifiedTable(schema, 'passports')} DROP COLUMN refreshed_from`);
  }
}
