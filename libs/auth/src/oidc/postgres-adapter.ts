/**
 * oidc-provider's storage on Postgres (auth schema, table `oidc_payloads`), so clients, grants,
 * codes, refresh tokens, sessions and interactions survive restarts and are shared by every auth
 * replica. Each method is one statement (or one short transaction of statements only): the
 * embedded Postgres serves one transaction at a time, so none may wait on anything else.
 *
 * Two behaviours beyond plain storage:
 * - refresh-token grace: a refresh token consumed less than REFRESH_GRACE_MS ago reads as
 *   unconsumed once, so a client resending the token it just rotated gets a fresh pair instead
 *   of having its whole grant revoked (some MCP clients do this). Only the read of its own
 *   client's refresh_token grant at the token endpoint takes the grace: introspection,
 *   revocation or another client looking the token up read it consumed (inactive) and leave the
 *   grace to the client. Only once: that read marks `grace_used_at` with a conditional UPDATE
 *   (atomic across replicas), and any later one is consumed, which oidc-provider treats as reuse
 *   and revokes the grant;
 * - revoking a grant (oidc-provider's revocation, a member revoked, an app disconnected) writes
 *   a RevocationRecordedEvent through the outbox in the same transaction as the delete.
 */
import { randomUUID } from 'node:crypto';

import { RevocationRecordedEvent } from '@stack/contracts';
import { Outbox, qualifiedTable, runStatement, schemaOf } from '@stack/persistence';
import Provider, { errors } from 'oidc-provider';
import type { DataSource, EntityManager } from 'typeorm';

/** How long a just-rotated refresh token may be presented again. */
export const REFRESH_GRACE_MS = 60_000;
/** Longest life of anything derived from a grant (refresh tokens): when a grant revocation stops mattering. */
export const GRANT_MAX_LIFETIME_MS = 30 * 24 * 3600 * 1000;

interface PayloadRow {
  payload: Record<string, unknown>;
  consumed_at: Date | null;
  expires_at: Date | null;
  /** RefreshToken only: this read took the token's one grace presentation. */
  in_grace?: boolean;
}

/**
 * The client redeeming a refresh token in the request being served (the refresh_token grant at
 * the token endpoint), or undefined for any other lookup: the only read that may take the grace.
 */
export type RefreshRedeemer = () => string | undefined;

/**
 * Read from oidc-provider's request context (its AsyncLocalStorage, entered on every route):
 * at the token endpoint, the refresh_token grant is the one lookup of a refresh token, and runs
 * after client authentication. Introspection and revocation are other routes.
 */
export const refreshGrantClient: RefreshRedeemer = () => {
  const oidc = Provider.ctx?.oidc;
  if (oidc?.route !== 'token' || oidc.params?.grant_type !== 'refresh_token') return undefined;
  return oidc.client?.clientId;
};

export interface AdapterPayload {
  [key: string]: unknown;
  grantId?: string;
  uid?: string;
  userCode?: string;
  consumed?: unknown;
}

export class PostgresOidcAdapter {
  private readonly table: string;

  constructor(
    private readonly model: string,
    private readonly dataSource: DataSource,
    private readonly redeemer: RefreshRedeemer = refreshGrantClient,
  ) {
    this.table = qualifiedTable(schemaOf(dataSource), 'oidc_payloads');
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const grantId = payload.grantId ?? (this.model === 'Grant' ? id : null);
    const expiresAt = expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
    await this.dataSource.query(
      `INSERT INTO ${this.table} (model, id, payload, grant_id, uid, user_code, expires_at)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid, user_code = EXCLUDED.user_code, expires_at = EXCLUDED.expires_at`,
      [this.model, id, JSON.stringify(payload), grantId, payload.uid ?? null, payload.userCode ?? null, expiresAt],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.findBy('id', id);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.findBy('user_code', userCode);
  }

  async consume(id: string): Promise<void> {
    const { rows } = await runStatement(this.dataSource, `UPDATE ${this.table} SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL RETURNING 1`, [this.model, id]);
    if (rows.length > 0 || this.model !== 'AuthorizationCode') return;
    // oidc-provider read the code unconsumed, but another request (another replica) redeemed it
    // between that read and this write: an authorization code is redeemed once (OAuth 2.1 §4.1.3),
    // so this request is refused and, as for any reuse, what the code gave is revoked (RFC 6749 §4.1.2).
    const found = (await this.dataSource.query(`SELECT grant_id FROM ${this.table} WHERE model = $1 AND id = $2`, [this.model, id])) as Array<{ grant_id: string | null }>;
    const grantId = found[0]?.grant_id;
    if (grantId) await this.revokeByGrantId(grantId);
    throw new errors.InvalidGrant('authorization code already consumed');
  }

  async destroy(id: string): Promise<void> {
    // oidc-provider destroys a grant only to revoke it: record the revocation like revokeByGrantId.
    if (this.model === 'Grant') {
      await this.dataSource.transaction((manager) => revokeGrantRows(manager, id, 'grant revoked'));
      return;
    }
    await this.dataSource.query(`DELETE FROM ${this.table} WHERE model = $1 AND id = $2`, [this.model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.dataSource.transaction((manager) => revokeGrantRows(manager, grantId, 'grant revoked'));
  }

  private async findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    // Any other read of a refresh token sees it as it is: consumed once rotated, grace untouched.
    const redeemer = this.model === 'RefreshToken' ? this.redeemer() : undefined;
    const rows = (
      redeemer
        ? // One statement: claim the grace if it is still unused (the UPDATE's row lock serialises
          // concurrent reads, so only one gets it), then read the row as it was before. Another
          // client's token would fail the grant anyway (client mismatch): it takes no grace.
          await this.dataSource.query(
            `WITH grace AS (
               UPDATE ${this.table} SET grace_used_at = now()
               WHERE model = $1 AND ${column} = $2 AND grace_used_at IS NULL
                 AND consumed_at IS NOT NULL AND consumed_at > now() - ($3::bigint * interval '1 millisecond')
                 AND (expires_at IS NULL OR expires_at > now())
                 AND payload->>'clientId' = $4
               RETURNING 1
             )
             SELECT payload, consumed_at, expires_at, EXISTS (SELECT 1 FROM grace) AS in_grace FROM ${this.table} WHERE model = $1 AND ${column} = $2`,
            [this.model, value, REFRESH_GRACE_MS, redeemer],
          )
        : await this.dataSource.query(`SELECT payload, consumed_at, expires_at FROM ${this.table} WHERE model = $1 AND ${column} = $2`, [this.model, value])
    ) as PayloadRow[];
    const row = rows[0];
    if (!row) return undefined;
    if (row.expires_at && new Date(row.expires_at).getTime() <= Date.now()) return undefined;
    const payload: AdapterPayload = { ...row.payload };
    if (row.consumed_at && !row.in_grace) payload.consumed = Math.floor(new Date(row.consumed_at).getTime() / 1000);
    return payload;
  }
}

/**
 * Deletes every row of a grant (the grant, its tokens, codes) and records the revocation through
 * the outbox, in the caller's transaction. The operator comes from the grant's member; a grant
 * that no longer exists writes no event (nothing was revoked).
 */
export async function revokeGrantRows(manager: EntityManager, grantId: string, reason: string): Promise<boolean> {
  const schema = schemaOf(manager);
  const payloads = qualifiedTable(schema, 'oidc_payloads');
  const members = qualifiedTable(schema, 'members');
  // Deleting the grant row first, with RETURNING, makes exactly one of several concurrent
  // revocations of the same grant the one that records it.
  const deleted = await runStatement<{ account_id: string | null }>(manager, `DELETE FROM ${payloads} WHERE model = 'Grant' AND id = $1 RETURNING payload->>'accountId' AS account_id`, [grantId]);
  await manager.query(`DELETE FROM ${payloads} WHERE grant_id = $1`, [grantId]);
  await manager.query(`UPDATE ${qualifiedTable(schema, 'connected_apps')} SET revoked_at = now() WHERE grant_id = $1 AND revoked_at IS NULL`, [grantId]);
  const accountId = deleted.rows[0]?.account_id;
  if (!accountId) return false;
  const owners = (await manager.query(`SELECT operator_id FROM ${members} WHERE id = $1`, [accountId])) as { operator_id: string }[];
  const operatorId = owners[0]?.operator_id;
  if (!operatorId) return false;
  const now = Date.now();
  await Outbox.enqueue(manager, RevocationRecordedEvent, {
    id: randomUUID(),
    kind: 'grant',
    value: grantId,
    operator_id: operatorId,
    revoked_at_ms: now,
    expires_at_ms: now + GRANT_MAX_LIFETIME_MS,
    reason,
  });
  return true;
}

/** Deletes expired rows; run now and then by one replica at a time. */
export async function sweepExpiredPayloads(dataSource: DataSource): Promise<number> {
  const result = await runStatement(dataSource, `DELETE FROM ${qualifiedTable(schemaOf(dataSource), 'oidc_payloads')} WHERE expires_at < now()`);
  return result.affected;
}
