/**
 * The passport service's tables: agents and their grants, issued passports (for listing and
 * refresh; the token itself is never stored), revocations (the durable side of the revocation
 * stream, including the member/grant/client revocations auth publishes) and signing keys,
 * their private halves sealed with the master keyring.
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from '@stack/persistence';

export class PassportInit1764300000000 implements MigrationInterface {
  readonly name = 'PassportInit1764300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const t = (n: string) => qualifiedTable(schemaOf(queryRunner), n);
    await queryRunner.query(`
      CREATE TABLE ${t('agents')} (
        id           text PRIMARY KEY,
        operator_id  text NOT NULL,
        name         text NOT NULL,
        description  text,
        created_by   text,
        client_id    text,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        UNIQUE (operator_id, name)
      )`);
    // An approved OAuth client is one agent per operator, whoever approved it.
    await queryRunner.query(`CREATE UNIQUE INDEX agents_operator_client ON ${t('agents')} (operator_id, client_id) WHERE client_id IS NOT NULL`);
    await queryRunner.query(`
      CREATE TABLE ${t('agent_grants')} (
        id             text PRIMARY KEY,
        operator_id    text NOT NULL,
        agent_id       text NOT NULL REFERENCES ${t('agents')} (id) ON DELETE CASCADE,
        connection_id  text NOT NULL,
        service_id     text NOT NULL,
        service_name   text NOT NULL,
        scopes         jsonb NOT NULL,
        constraints    jsonb NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        UNIQUE (agent_id, connection_id)
      )`);
    await queryRunner.query(`
      CREATE TABLE ${t('passports')} (
        jti               text PRIMARY KEY,
        operator_id       text NOT NULL,
        agent_id          text NOT NULL,
        member_id         text NOT NULL,
        session_id        text NOT NULL,
        parent_jti        text,
        chain             jsonb NOT NULL,
        delegation_depth  integer NOT NULL,
        issued_at_ms      bigint NOT NULL,
        expires_at        timestamptz NOT NULL,
        intent_summary    text NOT NULL,
        intent_services   jsonb NOT NULL,
        services          jsonb NOT NULL,
        kid               text NOT NULL
      )`);
    await queryRunner.query(`CREATE INDEX passports_operator_expires_idx ON ${t('passports')} (operator_id, expires_at)`);
    await queryRunner.query(`CREATE INDEX passports_session_idx ON ${t('passports')} (session_id)`);
    await queryRunner.query(`
      CREATE TABLE ${t('revocations')} (
        id             text PRIMARY KEY,
        kind           text NOT NULL,
        value          text NOT NULL,
        operator_id    text NOT NULL,
        revoked_at_ms  bigint NOT NULL,
        expires_at_ms  bigint NOT NULL,
        reason         text,
        created_at     timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`CREATE INDEX revocations_expires_idx ON ${t('revocations')} (expires_at_ms)`);
    await queryRunner.query(`
      CREATE TABLE ${t('signing_keys')} (
        kid            text PRIMARY KEY,
        status         text NOT NULL CHECK (status IN ('active', 'retired')),
        public_x       text NOT NULL,
        private_sealed jsonb NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        retired_at     timestamptz,
        publish_until  timestamptz
      )`);
    // One active key at a time, even when replicas rotate at once: the loser's insert conflicts.
    await queryRunner.query(`CREATE UNIQUE INDEX signing_keys_one_active ON ${t('signing_keys')} (status) WHERE status = 'active'`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const t = (n: string) => qualifiedTable(schemaOf(queryRunner), n);
    for (const n of ['signing_keys', 'revocations', 'passports', 'agent_grants', 'agents']) await queryRunner.query(`DROP TABLE ${t(n)}`);
  }
}
