/**
 * Auth's tables: operators, members, invitations, password resets, API keys, connected apps,
 * signing keys (sealed), and the one table oidc-provider keeps everything in (clients, grants,
 * codes, refresh tokens, sessions, interactions), keyed by (model, id).
 */
import type { MigrationInterface, QueryRunner } from 'typeorm';

import { qualifiedTable, schemaOf } from '@stack/persistence';

export class AuthInit1764200000000 implements MigrationInterface {
  readonly name = 'AuthInit1764200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const s = schemaOf(queryRunner);
    const t = (name: string) => qualifiedTable(s, name);
    await queryRunner.query(`
      CREATE TABLE ${t('operators')} (
        id          text PRIMARY KEY,
        name        text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`
      CREATE TABLE ${t('members')} (
        id                   text PRIMARY KEY,
        operator_id          text NOT NULL REFERENCES ${t('operators')}(id),
        email                text NOT NULL,
        name                 text NOT NULL,
        role                 text NOT NULL CHECK (role IN ('owner','admin','standard','readonly')),
        password_hash        text,
        allowed_connections  jsonb,
        status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active','revoked')),
        created_at           timestamptz NOT NULL DEFAULT now(),
        revoked_at           timestamptz
      )`);
    // One login per email across the deployment: the login page asks for no operator.
    await queryRunner.query(`CREATE UNIQUE INDEX members_email_idx ON ${t('members')} (lower(email))`);
    await queryRunner.query(`CREATE INDEX members_operator_idx ON ${t('members')} (operator_id)`);
    await queryRunner.query(`
      CREATE TABLE ${t('invitations')} (
        id           text PRIMARY KEY,
        operator_id  text NOT NULL REFERENCES ${t('operators')}(id),
        email        text NOT NULL,
        name         text NOT NULL,
        role         text NOT NULL,
        token_hash   text NOT NULL UNIQUE,
        invited_by   text NOT NULL,
        expires_at   timestamptz NOT NULL,
        accepted_at  timestamptz,
        created_at   timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`
      CREATE TABLE ${t('password_resets')} (
        token_hash  text PRIMARY KEY,
        member_id   text NOT NULL REFERENCES ${t('members')}(id),
        expires_at  timestamptz NOT NULL,
        used_at     timestamptz
      )`);
    await queryRunner.query(`
      CREATE TABLE ${t('api_keys')} (
        id            text PRIMARY KEY,
        operator_id   text NOT NULL,
        member_id     text NOT NULL REFERENCES ${t('members')}(id),
        name          text NOT NULL,
        prefix        text NOT NULL,
        key_hash      text NOT NULL UNIQUE,
        scopes        jsonb NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_used_at  timestamptz,
        revoked_at    timestamptz
      )`);
    await queryRunner.query(`CREATE INDEX api_keys_member_idx ON ${t('api_keys')} (member_id)`);
    await queryRunner.query(`
      CREATE TABLE ${t('connected_apps')} (
        member_id      text NOT NULL REFERENCES ${t('members')}(id),
        client_id      text NOT NULL,
        operator_id    text NOT NULL,
        grant_id       text NOT NULL,
        client_name    text,
        redirect_host  text,
        scopes         jsonb NOT NULL,
        refused_scopes jsonb NOT NULL DEFAULT '[]'::jsonb,
        approved_at    timestamptz NOT NULL DEFAULT now(),
        revoked_at     timestamptz,
        PRIMARY KEY (member_id, client_id)
      )`);
    await queryRunner.query(`CREATE INDEX connected_apps_grant_idx ON ${t('connected_apps')} (grant_id)`);
    await queryRunner.query(`
      CREATE TABLE ${t('signing_keys')} (
        kid         text PRIMARY KEY,
        alg         text NOT NULL,
        sealed      jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        retired_at  timestamptz
      )`);
    await queryRunner.query(`
      CREATE TABLE ${t('oidc_payloads')} (
        model        text NOT NULL,
        id           text NOT NULL,
        payload      jsonb NOT NULL,
        grant_id     text,
        uid          text,
        user_code    text,
        expires_at   timestamptz,
        consumed_at  timestamptz,
        PRIMARY KEY (model, id)
      )`);
    await queryRunner.query(`CREATE INDEX oidc_payloads_grant_idx ON ${t('oidc_payloads')} (grant_id) WHERE grant_id IS NOT NULL`);
    await queryRunner.query(`CREATE INDEX oidc_payloads_uid_idx ON ${t('oidc_payloads')} (uid) WHERE uid IS NOT NULL`);
    await queryRunner.query(`CREATE INDEX oidc_payloads_expires_idx ON ${t('oidc_payloads')} (expires_at) WHERE expires_at IS NOT NULL`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const s = schemaOf(queryRunner);
    for (const name of ['oidc_payloads', 'signing_keys', 'connected_apps', 'api_keys', 'password_resets', 'invitations', 'members', 'operators']) {
      await queryRunner.query(`DROP TABLE ${qualifiedTable(s, name)}`);
    }
  }
}
