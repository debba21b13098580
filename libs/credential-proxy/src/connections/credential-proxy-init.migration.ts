/**
 * The credential-proxy schema: custom services an admin defined, and connections — each one
 * credential of one service, sealed by the vault (envelope encryption, DESIGN.md §5). `key_id`
 * repeats the sealed secret's key-encryption key id so rotation finds what to re-wrap by index.
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

export class CredentialProxyInit1764400000000 implements MigrationInterface {
  readonly name = 'CredentialProxyInit1764400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE credential_proxy.services (
        operator_id   text NOT NULL,
        service_id    text NOT NULL,
        name          text NOT NULL,
        base_url      text NOT NULL,
        auth_type     text NOT NULL,
        auth_name     text,
        allowed_hosts jsonb NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (operator_id, service_id)
      )`);
    await q.query(`
      CREATE TABLE credential_proxy.connections (
        id          text PRIMARY KEY,
        operator_id text NOT NULL,
        service_id  text NOT NULL,
        name        text NOT NULL,
        kind        text NOT NULL,
        status      text NOT NULL,
        secret      jsonb NOT NULL,
        key_id      text NOT NULL,
        base_url    text,
        scopes      jsonb NOT NULL DEFAULT '[]',
        expires_at  timestamptz,
        created_by  text,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        verified_at timestamptz
      )`);
    await q.query(`CREATE UNIQUE INDEX connections_operator_service_name ON credential_proxy.connections (operator_id, service_id, name)`);
    await q.query(`CREATE INDEX connections_key_id ON credential_proxy.connections (key_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE credential_proxy.connections`);
    await q.query(`DROP TABLE credential_proxy.services`);
  }
}
