/**
 * `oidc_payloads.grace_used_at`: when a consumed refresh token was read as unconsumed within
 * the grace window (PostgresOidcAdapter). Set once, by a conditional UPDATE, so only one
 * presentation per rotated token gets the grace, across every auth replica.
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from '@stack/persistence';

export class AuthRefreshGrace1765200000000 implements MigrationInterface {
  readonly name = 'AuthRefreshGrace1765200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE ${qualifiedTable(schemaOf(queryRunner), 'oidc_payloads')} ADD COLUMN grace_used_at timestamptz`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE ${qualifiedTable(schemaOf(queryRunner), 'oidc_payloads')} DROP COLUMN grace_used_at`);
  }
}
