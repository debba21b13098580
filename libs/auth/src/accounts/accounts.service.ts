/**
 * Operators, members, invitations, password resets, API keys and connected apps: every account
 * operation of the auth service, as short SQL statements on auth's own schema. Operations that
 * change state and publish an event write both in one transaction (the outbox); none awaits
 * anything but its own queries while a transaction is open (the embedded Postgres serves one at
 * a time).
 */
import { randomUUID } from 'node:crypto';

import { Inject, Injectable } from '@nestjs/common';
import { ClientApprovedEvent, MemberRevokedEvent, RevocationRecordedEvent, StackError, scopesOfRole, type MemberRole } from '@stack/contracts';
import { Outbox, qualifiedTable, runStatement, schemaOf } from '@stack/persistence';
import { API_KEY_REVOCATION_TTL_MS, serviceKitToken, type ServiceKit } from '@stack/runtime';
import type { DataSource, EntityManager } from 'typeorm';

import { GRANT_MAX_LIFETIME_MS, revokeGrantRows } from '../oidc/postgres-adapter';
import { API_KEY_PREFIX, hashPassword, newApiKey, newId, passwordProblem, randomToken, sha256 } from './passwords';

export interface MemberRecord {
  id: string;
  operator_id: string;
  email: string;
  name: string;
  role: MemberRole;
  status: 'active' | 'revoked';
  allowed_connections: string[] | null;
  created_at: string;
  revoked_at: string | null;
}

interface MemberRow extends Omit<MemberRecord, 'created_at' | 'revoked_at'> {
  password_hash: string | null;
  created_at: Date;
  revoked_at: Date | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  member_id: string;
  scopes: string[];
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface ConnectedAppRecord {
  client_id: string;
  client_name: string | null;
  redirect_host: string | null;
  scopes: string[];
  /** Scopes the member unticked last time: left unticked when the client asks again. */
  refused_scopes: string[];
  grant_id: string;
  approved_at: string;
}

export interface ResolvedApiKey {
  api_key_id: string;
  operator_id: string;
  member_id: string;
  role: MemberRole;
  scopes: string[];
  allowed_connections?: string[];
}

const INVITATION_TTL_MS = 7 * 24 * 3600 * 1000;
const RESET_TTL_MS = 3600 * 1000;
const iso = (d: Date | null | undefined): string | null => (d ? new Date(d).toISOString() : null);

function toMember(row: Omit<MemberRow, 'password_hash'>): MemberRecord {
  return {
    id: row.id,
    operator_id: row.operator_id,
    email: row.email,
    name: row.name,
    role: row.role,
    status: row.status,
    allowed_connections: row.allowed_connections,
    created_at: iso(row.created_at)!,
    revoked_at: iso(row.revoked_at),
  };
}

export function canAdminister(role: MemberRole): boolean {
  return role === 'owner' || role === 'admin';
}

@Injectable()
export class AccountsService {
  private readonly ds: DataSource;
  private readonly t: (name: string) => string;

  // Only the data source and configuration: the admin CLI builds one without the runtime.
  constructor(@Inject(serviceKitToken('auth')) private readonly kit: Pick<ServiceKit, 'dataSource' | 'config'>) {
    this.ds = kit.dataSource;
    const schema = schemaOf(kit.dataSource);
    this.t = (name) => qualifiedTable(schema, name);
  }

  async countMembers(): Promise<number> {
    const rows = (await this.ds.query(`SELECT count(*)::int AS n FROM ${this.t('members')}`)) as { n: number }[];
    return rows[0]?.n ?? 0;
  }

  /** A new operator and its first owner. Refuses an email that already has a login. */
  async createOperatorWithOwner(input: { operatorName: string; email: string; password: string; name?: string }): Promise<{ operator_id: string; member_id: string }> {
    const problem = passwordProblem(input.password);
    if (problem) throw new StackError('INVALID_REQUEST', problem);
    const email = normaliseEmail(input.email);
    const hash = await hashPassword(input.password);
    const operatorId = newId('op');
    const memberId = newId('mem');
    await this.ds.transaction(async (m) => {
      const existing = (await m.query(`SELECT 1 FROM ${this.t('members')} WHERE lower(email) = $1`, [email])) as unknown[];
      if (existing.length) throw new StackError('IDEMPOTENCY_CONFLICT', `a member with email ${email} already exists`);
      await m.query(`INSERT INTO ${this.t('operators')} (id, name) VALUES ($1, $2)`, [operatorId, input.operatorName]);
      await m.query(`INSERT INTO ${this.t('members')} (id, operator_id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, 'owner', $5)`, [
        memberId,
        operatorId,
        email,
        input.name ?? email.split('@')[0],
        hash,
      ]);
    });
    return { operator_id: operatorId, member_id: memberId };
  }

  async findMemberForLogin(email: string): Promise<(MemberRecord & { password_hash: string | null }) | undefined> {
    const rows = (await this.ds.query(`SELECT * FROM ${this.t('members')} WHERE lower(email) = $1`, [normaliseEmail(email)])) as MemberRow[];
    const row = rows[0];
    return row ? { ...toMember(row), password_hash: row.password_hash } : undefined;
  }

  async findMember(id: string): Promise<MemberRecord | undefined> {
    const rows = (await this.ds.query(`SELECT * FROM ${this.t('members')} WHERE id = $1`, [id])) as MemberRow[];
    return rows[0] ? toMember(rows[0]) : undefined;
  }

  async listMembers(operatorId: string): Promise<MemberRecord[]> {
    const rows = (await this.ds.query(`SELECT * FROM ${this.t('members')} WHERE operator_id = $1 ORDER BY created_at, id`, [operatorId])) as MemberRow[];
    return rows.map(toMember);
  }

  /** Another operator's member is NOT_FOUND, never FORBIDDEN. */
  async getMember(operatorId: string, id: string): Promise<MemberRecord> {
    const rows = (await this.ds.query(`SELECT * FROM ${this.t('members')} WHERE id = $1 AND operator_id = $2`, [id, operatorId])) as MemberRow[];
    if (!rows[0]) throw new StackError('NOT_FOUND', 'no such member');
    return toMember(rows[0]);
  }

  async invite(input: { operatorId: string; invitedBy: string; email: string; name: string; role: MemberRole }): Promise<{ invitation_id: string; token: string; expires_at: string }> {
    if (this.kit.config.authSignup === 'closed') throw new StackError('FORBIDDEN', 'invitations are closed on this deployment (STACK_AUTH_SIGNUP=closed)');
    if (input.role === 'owner') throw new StackError('INVALID_REQUEST', 'invite as admin, standard or readonly; ownership is not handed out by invitation');
    const email = normaliseEmail(input.email);
    const existing = (await this.ds.query(`SELECT 1 FROM ${this.t('members')} WHERE lower(email) = $1`, [email])) as unknown[];
    if (existing.length) throw new StackError('IDEMPOTENCY_CONFLICT', `a member with email ${email} already exists`);
    const id = newId('inv');
    const token = randomToken();
    const expires = new Date(Date.now() + INVITATION_TTL_MS);
    await this.ds.query(`INSERT INTO ${this.t('invitations')} (id, operator_id, email, name, role, token_hash, invited_by, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`, [
      id,
      input.operatorId,
      email,
      input.name,
      input.role,
      sha256(token),
      input.invitedBy,
      expires,
    ]);
    return { invitation_id: id, token, expires_at: expires.toISOString() };
  }

  async findInvitation(token: string): Promise<{ email: string; name: string; operator_id: string } | undefined> {
    const rows = (await this.ds.query(`SELECT email, name, operator_id FROM ${this.t('invitations')} WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now()`, [sha256(token)])) as {
      email: string;
      name: string;
      operator_id: string;
    }[];
    return rows[0];
  }

  async acceptInvitation(token: string, password: string): Promise<MemberRecord> {
    if (this.kit.config.authSignup === 'closed') throw new StackError('FORBIDDEN', 'invitations are closed on this deployment');
    const problem = passwordProblem(password);
    if (problem) throw new StackError('INVALID_REQUEST', problem);
    const hash = await hashPassword(password);
    const memberId = newId('mem');
    await this.ds.transaction(async (m) => {
      const accepted = await runStatement<{ operator_id: string; email: string; name: string; role: string }>(
        m,
        `UPDATE ${this.t('invitations')} SET accepted_at = now() WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now() RETURNING operator_id, email, name, role`,
        [sha256(token)],
      );
      const inv = accepted.rows[0];
      if (!inv) throw new StackError('NOT_FOUND', 'this invitation link is unknown, used or expired');
      await m.query(`INSERT INTO ${this.t('members')} (id, operator_id, email, name, role, password_hash) VALUES ($1,$2,$3,$4,$5,$6)`, [memberId, inv.operator_id, inv.email, inv.name, inv.role, hash]);
    });
    return (await this.findMember(memberId))!;
  }

  async updateMember(operatorId: string, id: string, patch: { name?: string; role?: MemberRole; allowed_connections?: string[] | null }): Promise<MemberRecord> {
    const member = await this.getMember(operatorId, id);
    if (member.status !== 'active') throw new StackError('INVALID_REQUEST', 'a revoked member cannot be changed');
    if (member.role === 'owner' && patch.role && patch.role !== 'owner') await this.assertAnotherOwner(operatorId, id);
    // A role that loses scopes (an admin made standard) ends the member's OAuth grants in the same
    // transaction: their tokens carry the old scopes for up to 30 days otherwise. The apps connect
    // again and are offered what the new role allows. (API keys are checked against the role at each use.)
    const lost = patch.role !== undefined && scopesOfRole(member.role).some((s) => !(scopesOfRole(patch.role!) as string[]).includes(s));
    await this.ds.transaction(async (m) => {
      await m.query(
        `UPDATE ${this.t('members')} SET name = COALESCE($3, name), role = COALESCE($4, role), allowed_connections = CASE WHEN $5::boolean THEN $6::jsonb ELSE allowed_connections END WHERE id = $1 AND operator_id = $2`,
        [id, operatorId, patch.name ?? null, patch.role ?? null, patch.allowed_connections !== undefined, patch.allowed_connections === undefined ? null : JSON.stringify(patch.allowed_connections)],
      );
      if (!lost) return;
      const grants = (await m.query(`SELECT id FROM ${this.t('oidc_payloads')} WHERE model = 'Grant' AND payload->>'accountId' = $1`, [id])) as { id: string }[];
      for (const g of grants) await revokeGrantRows(m, g.id, 'member role reduced');
    });
    return this.getMember(operatorId, id);
  }

  /**
   * Revokes a member and everything that acts as them: API keys, OAuth grants (with their
   * tokens) and login sessions; one revocation record per grant and one for the member, all in
   * one transaction with the change.
   */
  async revokeMember(operatorId: string, id: string, by: string): Promise<MemberRecord> {
    const member = await this.getMember(operatorId, id);
    if (member.status === 'revoked') return member;
    if (member.role === 'owner') await this.assertAnotherOwner(operatorId, id);
    const payloads = this.t('oidc_payloads');
    await this.ds.transaction(async (m) => {
      const now = Date.now();
      await m.query(`UPDATE ${this.t('members')} SET status = 'revoked', revoked_at = now() WHERE id = $1`, [id]);
      await m.query(`UPDATE ${this.t('api_keys')} SET revoked_at = now() WHERE member_id = $1 AND revoked_at IS NULL`, [id]);
      const grants = (await m.query(`SELECT id FROM ${payloads} WHERE model = 'Grant' AND payload->>'accountId' = $1`, [id])) as { id: string }[];
      for (const g of grants) await revokeGrantRows(m, g.id, 'member revoked');
      await m.query(`DELETE FROM ${payloads} WHERE model = 'Session' AND payload->>'accountId' = $1`, [id]);
      await Outbox.enqueue(m, RevocationRecordedEvent, { id: randomUUID(), kind: 'member', value: id, operator_id: operatorId, revoked_at_ms: now, expires_at_ms: now + GRANT_MAX_LIFETIME_MS, reason: 'member revoked' });
      await Outbox.enqueue(m, MemberRevokedEvent, { operator_id: operatorId, member_id: id, revoked_by: by, revoked_at: new Date(now).toISOString() });
    });
    return this.getMember(operatorId, id);
  }

  private async assertAnotherOwner(operatorId: string, id: string): Promise<void> {
    const rows = (await this.ds.query(`SELECT count(*)::int AS n FROM ${this.t('members')} WHERE operator_id = $1 AND role = 'owner' AND status = 'active' AND id <> $2`, [operatorId, id])) as { n: number }[];
    if (!rows[0]?.n) throw new StackError('INVALID_REQUEST', 'an operator keeps at least one owner');
  }

  async createPasswordReset(operatorId: string, memberId: string): Promise<{ token: string; expires_at: string }> {
    const member = await this.getMember(operatorId, memberId);
    if (member.status !== 'active') throw new StackError('INVALID_REQUEST', 'a revoked member cannot reset a password');
    const token = randomToken();
    const expires = new Date(Date.now() + RESET_TTL_MS);
    await this.ds.query(`INSERT INTO ${this.t('password_resets')} (token_hash, member_id, expires_at) VALUES ($1, $2, $3)`, [sha256(token), memberId, expires]);
    return { token, expires_at: expires.toISOString() };
  }

  async resetPasswordValid(token: string): Promise<boolean> {
    const rows = (await this.ds.query(`SELECT 1 FROM ${this.t('password_resets')} WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()`, [sha256(token)])) as unknown[];
    return rows.length > 0;
  }

  async resetPassword(token: string, password: string): Promise<void> {
    const problem = passwordProblem(password);
    if (problem) throw new StackError('INVALID_REQUEST', problem);
    const hash = await hashPassword(password);
    await this.ds.transaction(async (m) => {
      const result = await runStatement<{ member_id: string }>(m, `UPDATE ${this.t('password_resets')} SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING member_id`, [sha256(token)]);
      const memberId = result.rows[0]?.member_id;
      if (!memberId) throw new StackError('NOT_FOUND', 'this reset link is unknown, used or expired');
      await m.query(`UPDATE ${this.t('members')} SET password_hash = $2 WHERE id = $1 AND status = 'active'`, [memberId, hash]);
      // Signed out of every browser: a session begun with the old password (by whoever knew it) ends.
      await m.query(`DELETE FROM ${this.t('oidc_payloads')} WHERE model = 'Session' AND payload->>'accountId' = $1`, [memberId]);
    });
  }

  /**
   * A new key of the member, holding the scopes their role allows that the credential creating
   * it holds too (a key never holds more than what made it); OUT_OF_SCOPE when that is none.
   */
  async createApiKey(member: MemberRecord, name: string, callerScopes: readonly string[]): Promise<{ key: string; record: ApiKeyRecord }> {
    const scopes = scopesOfRole(member.role).filter((s) => callerScopes.includes(s));
    if (!scopes.length) throw new StackError('OUT_OF_SCOPE', 'this credential holds no scope an API key of this member could hold');
    const key = newApiKey();
    const id = newId('key');
    await this.ds.query(`INSERT INTO ${this.t('api_keys')} (id, operator_id, member_id, name, prefix, key_hash, scopes) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb)`, [
      id,
      member.operator_id,
      member.id,
      name,
      key.slice(0, API_KEY_PREFIX.length + 6),
      sha256(key),
      JSON.stringify(scopes),
    ]);
    const record = (await this.listApiKeys(member.operator_id, member.id)).find((k) => k.id === id)!;
    return { key, record };
  }

  async listApiKeys(operatorId: string, memberId: string): Promise<ApiKeyRecord[]> {
    const rows = (await this.ds.query(`SELECT * FROM ${this.t('api_keys')} WHERE operator_id = $1 AND member_id = $2 ORDER BY created_at, id`, [operatorId, memberId])) as (Omit<
      ApiKeyRecord,
      'created_at' | 'last_used_at' | 'revoked_at'
    > & { created_at: Date; last_used_at: Date | null; revoked_at: Date | null })[];
    return rows.map((r) => ({ id: r.id, name: r.name, prefix: r.prefix, member_id: r.member_id, scopes: r.scopes, created_at: iso(r.created_at)!, last_used_at: iso(r.last_used_at), revoked_at: iso(r.revoked_at) }));
  }

  /**
   * Revokes one key of the member (an admin may revoke any key of the operator), with an
   * `api_key` revocation record in the same transaction: every node drops the key from its cache
   * as the record reaches it. The record lives while a node could still hold the key's answer;
   * after that this table refuses the key at lookup. Revoking a revoked key changes nothing.
   */
  async revokeApiKey(caller: MemberRecord, id: string): Promise<void> {
    await this.ds.transaction(async (m) => {
      const now = Date.now();
      const rows = (await m.query(`SELECT revoked_at FROM ${this.t('api_keys')} WHERE id = $1 AND operator_id = $2 AND (member_id = $3 OR $4::boolean) FOR UPDATE`, [
        id,
        caller.operator_id,
        caller.id,
        canAdminister(caller.role),
      ])) as { revoked_at: Date | null }[];
      if (!rows[0]) throw new StackError('NOT_FOUND', 'no such API key');
      if (rows[0].revoked_at) return;
      await m.query(`UPDATE ${this.t('api_keys')} SET revoked_at = now() WHERE id = $1`, [id]);
      await Outbox.enqueue(m, RevocationRecordedEvent, {
        id: randomUUID(),
        kind: 'api_key',
        value: id,
        operator_id: caller.operator_id,
        revoked_at_ms: now,
        expires_at_ms: now + API_KEY_REVOCATION_TTL_MS,
        reason: 'API key revoked',
      });
    });
  }

  /**
   * What an API key acts as (the bus answer to other services): its scopes that its member's role
   * still allows. UNAUTHORIZED when unknown, revoked, its member is, or no scope is left.
   */
  async resolveApiKey(key: string): Promise<ResolvedApiKey> {
    return (await this.resolveApiKeyWithMember(key)).resolved;
  }

  /** The same, with the key's (active) member as a record: auth's own REST needs both, from one query. */
  async resolveApiKeyWithMember(key: string): Promise<{ resolved: ResolvedApiKey; member: MemberRecord }> {
    if (!key.startsWith(API_KEY_PREFIX)) throw new StackError('UNAUTHORIZED', 'not an API key');
    const rows = (await this.ds.query(
      `SELECT k.id AS key_id, k.operator_id AS key_operator_id, k.scopes, k.last_used_at,
              m.id, m.operator_id, m.email, m.name, m.role, m.status, m.allowed_connections, m.created_at, m.revoked_at
         FROM ${this.t('api_keys')} k JOIN ${this.t('members')} m ON m.id = k.member_id
        WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND m.status = 'active'`,
      [sha256(key)],
    )) as (Omit<MemberRow, 'password_hash'> & { key_id: string; key_operator_id: string; scopes: string[]; last_used_at: Date | null })[];
    const row = rows[0];
    if (!row) throw new StackError('UNAUTHORIZED', 'API key is unknown or revoked');
    // A member demoted since the key was made keeps only what the role allows now.
    const allowed: string[] = scopesOfRole(row.role);
    const scopes = row.scopes.filter((s) => allowed.includes(s));
    if (!scopes.length) throw new StackError('UNAUTHORIZED', "API key holds no scope its member's role allows");
    // last_used_at to the minute: enough to tell a stale key, without a write per request.
    if (!row.last_used_at || Date.now() - new Date(row.last_used_at).getTime() > 60_000) {
      await this.ds.query(`UPDATE ${this.t('api_keys')} SET last_used_at = now() WHERE id = $1`, [row.key_id]);
    }
    return {
      resolved: {
        api_key_id: row.key_id,
        operator_id: row.key_operator_id,
        member_id: row.id,
        role: row.role,
        scopes,
        ...(row.allowed_connections ? { allowed_connections: row.allowed_connections } : {}),
      },
      member: toMember(row),
    };
  }

  /** An active member's `allowed_connections` (absent when not limited); NOT_FOUND otherwise. */
  async memberAccess(operatorId: string, memberId: string): Promise<{ member_id: string; allowed_connections?: string[] }> {
    const rows = (await this.ds.query(`SELECT id, allowed_connections FROM ${this.t('members')} WHERE id = $1 AND operator_id = $2 AND status = 'active'`, [memberId, operatorId])) as Array<{ id: string; allowed_connections: string[] | null }>;
    const row = rows[0];
    if (!row) throw new StackError('NOT_FOUND', 'no such member');
    return { member_id: row.id, ...(row.allowed_connections ? { allowed_connections: row.allowed_connections } : {}) };
  }

  /** The grant a member already gave a client, to pre-fill consent and skip it when enough. */
  async connectedApp(memberId: string, clientId: string): Promise<ConnectedAppRecord | undefined> {
    return (await this.connectedApps(memberId, clientId))[0];
  }

  async connectedApps(memberId: string, clientId?: string): Promise<ConnectedAppRecord[]> {
    const rows = (await this.ds.query(
      `SELECT client_id, client_name, redirect_host, scopes, refused_scopes, grant_id, approved_at FROM ${this.t('connected_apps')} WHERE member_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR client_id = $2) ORDER BY approved_at`,
      [memberId, clientId ?? null],
    )) as (Omit<ConnectedAppRecord, 'approved_at'> & { approved_at: Date })[];
    return rows.map((r) => ({ ...r, approved_at: iso(r.approved_at)! }));
  }

  /** Records the member's approval (and announces it) in one transaction. */
  async recordConsent(input: { member: MemberRecord; clientId: string; clientName?: string; redirectHost?: string; grantId: string; scopes: string[]; refused: string[] }): Promise<void> {
    const approvedAt = new Date();
    await this.ds.transaction(async (m: EntityManager) => {
      await m.query(
        `INSERT INTO ${this.t('connected_apps')} (member_id, client_id, operator_id, grant_id, client_name, redirect_host, scopes, refused_scopes, approved_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9)
         ON CONFLICT (member_id, client_id) DO UPDATE SET grant_id = EXCLUDED.grant_id, client_name = EXCLUDED.client_name, redirect_host = EXCLUDED.redirect_host, scopes = EXCLUDED.scopes, refused_scopes = EXCLUDED.refused_scopes, approved_at = EXCLUDED.approved_at, revoked_at = NULL`,
        [input.member.id, input.clientId, input.member.operator_id, input.grantId, input.clientName ?? null, input.redirectHost ?? null, JSON.stringify(input.scopes), JSON.stringify(input.refused), approvedAt],
      );
      await Outbox.enqueue(m, ClientApprovedEvent, {
        operator_id: input.member.operator_id,
        member_id: input.member.id,
        client_id: input.clientId,
        ...(input.clientName ? { client_name: input.clientName } : {}),
        ...(input.redirectHost ? { redirect_host: input.redirectHost } : {}),
        grant_id: input.grantId,
        scopes: input.scopes,
        approved_at: approvedAt.toISOString(),
      });
    });
  }

  /** Disconnects one app: its grant and every token of it. */
  async revokeConnectedApp(member: MemberRecord, clientId: string): Promise<void> {
    const app = await this.connectedApp(member.id, clientId);
    if (!app) throw new StackError('NOT_FOUND', 'no such connected app');
    await this.ds.transaction((m) => revokeGrantRows(m, app.grant_id, 'connected app revoked'));
  }

  /** True while the grant exists (not revoked, not expired). */
  async grantAlive(grantId: string): Promise<boolean> {
    const rows = (await this.ds.query(`SELECT 1 FROM ${this.t('oidc_payloads')} WHERE model = 'Grant' AND id = $1 AND (expires_at IS NULL OR expires_at > now())`, [grantId])) as unknown[];
    return rows.length > 0;
  }
}

export function normaliseEmail(email: string): string {
  const e = email.trim().toLowerCase();
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(e) || e.length > 254) throw new StackError('INVALID_REQUEST', 'expected an email address');
  return e;
}
