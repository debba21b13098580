/**
 * SQL for connections and custom services. Every query names the operator: a row of another
 * operator is simply not found (DESIGN.md §10: 404, never 403).
 */
import type { DataSource } from 'typeorm';

import { runStatement } from '@stack/persistence';

import type { SealedSecret } from '@stack/security';

export type ConnectionKind = 'api_key' | 'basic' | 'oauth2';
export type ConnectionStatus = 'active' | 'needs_reauth';

export interface ConnectionRow {
  id: string;
  operator_id: string;
  service_id: string;
  name: string;
  kind: ConnectionKind;
  status: ConnectionStatus;
  secret: SealedSecret;
  key_id: string;
  base_url: string | null;
  scopes: string[];
  expires_at: Date | null;
  created_by: string | null;
  created_at: Date;
  updated_at: Date;
  verified_at: Date | null;
}

export interface CustomServiceRow {
  operator_id: string;
  service_id: string;
  name: string;
  base_url: string;
  auth_type: string;
  auth_name: string | null;
  allowed_hosts: string[];
  created_at: Date;
}

const T = 'credential_proxy.connections';

const S = 'credential_proxy.services';

function row(r: ConnectionRow): ConnectionRow {
  return { ...r, expires_at: r.expires_at ? new Date(r.expires_at) : null, created_at: new Date(r.created_at), updated_at: new Date(r.updated_at), verified_at: r.verified_at ? new Date(r.verified_at) : null };
}

export interface ConnectionRepositoryHooks {
  /** Called after a write to an operator's connections or custom services has committed. */
  changed?(operatorId: string): Promise<void>;
}

export class ConnectionRepository {
  constructor(
    private readonly ds: DataSource,
    private readonly hooks: ConnectionRepositoryHooks = {},
  ) {}

  private async changed(operatorId: string): Promise<void> {
    await this.hooks.changed?.(operatorId);
  }

  async insert(c: Omit<ConnectionRow, 'created_at' | 'updated_at' | 'verified_at'>): Promise<ConnectionRow | undefined> {
    const { rows: inserted } = await runStatement<ConnectionRow>(
      this.ds,
      `INSERT INTO ${T} (id, operator_id, service_id, name, kind, status, secret, key_id, base_url, scopes, expires_at, created_by)
       VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (operator_id, service_id, name) DO NOTHING RETURNING *`,
      [c.id, c.operator_id, c.service_id, c.name, c.kind, c.status, JSON.stringify(c.secret), c.key_id, c.base_url, JSON.stringify(c.scopes), c.expires_at, c.created_by],
    );
    if (inserted[0]) await this.changed(c.operator_id);
    return inserted[0] ? row(inserted[0]) : undefined;
  }

  async find(operatorId: string, id: string): Promise<ConnectionRow | undefined> {
    const rows = (await this.ds.query(`SELECT * FROM ${T} WHERE operator_id = $1 AND id = $2`, [operatorId, id])) as ConnectionRow[];
    return rows[0] ? row(rows[0]) : undefined;
  }

  async findByName(operatorId: string, serviceId: string, name: string): Promise<ConnectionRow | undefined> {
    const rows = (await this.ds.query(`SELECT * FROM ${T} WHERE operator_id = $1 AND service_id = $2 AND name = $3`, [operatorId, serviceId, name])) as ConnectionRow[];
    return rows[0] ? row(rows[0]) : undefined;
  }

  async list(operatorId: string, serviceId?: string): Promise<ConnectionRow[]> {
    const rows = (await (serviceId
      ? this.ds.query(`SELECT * FROM ${T} WHERE operator_id = $1 AND service_id = $2 ORDER BY created_at, id`, [operatorId, serviceId])
      : this.ds.query(`SELECT * FROM ${T} WHERE operator_id = $1 ORDER BY created_at, id`, [operatorId]))) as ConnectionRow[];
    return rows.map(row);
  }

  async delete(operatorId: string, id: string): Promise<boolean> {
    const { rows } = await runStatement(this.ds, `DELETE FROM ${T} WHERE operator_id = $1 AND id = $2 RETURNING id`, [operatorId, id]);
    if (rows.length > 0) await this.changed(operatorId);
    return rows.length > 0;
  }

  async markVerified(operatorId: string, id: string): Promise<void> {
    await this.ds.query(`UPDATE ${T} SET verified_at = now() WHERE operator_id = $1 AND id = $2`, [operatorId, id]);
    await this.changed(operatorId);
  }

  /**
   * Sets the status; with `ifSecretCt`, only while the row still holds the secret of that
   * ciphertext (a refresh refused must not mark a connection another replica has just refreshed).
   * False when no row changed.
   */
  async setStatus(operatorId: string, id: string, status: ConnectionStatus, options: { ifSecretCt?: string } = {}): Promise<boolean> {
    const { rows } = await runStatement(
      this.ds,
      `UPDATE ${T} SET status = $3, updated_at = now() WHERE operator_id = $1 AND id = $2 AND ($4::text IS NULL OR secret->>'ct' = $4::text) RETURNING id`,
      [operatorId, id, status, options.ifSecretCt ?? null],
    );
    if (rows.length > 0) await this.changed(operatorId);
    return rows.length > 0;
  }

  /**
   * Replaces the sealed secret (token refresh), and the scopes when `changes.scopes` is given (else
   * they stay as stored). False when the connection no longer exists.
   */
  async replaceSecret(operatorId: string, id: string, secret: SealedSecret, expiresAt: Date | null, changes: { scopes?: readonly string[]; status?: ConnectionStatus } = {}): Promise<boolean> {
    const { rows } = await runStatement(
      this.ds,
      `UPDATE ${T} SET secret = $3, key_id = $4, expires_at = $5, status = $6, scopes = COALESCE($7::jsonb, scopes), updated_at = now() WHERE operator_id = $1 AND id = $2 RETURNING id`,
      [operatorId, id, JSON.stringify(secret), secret.kid, expiresAt, changes.status ?? 'active', changes.scopes ? JSON.stringify(changes.scopes) : null],
    );
    if (rows.length > 0) await this.changed(operatorId);
    return rows.length > 0;
  }

  /** Re-wrap: replaces the secret only if it is still the one that was read (a refresh may have won). */
  async swapSecret(id: string, before: SealedSecret, after: SealedSecret): Promise<boolean> {
    const { rows } = await runStatement<{ operator_id: string }>(this.ds, `UPDATE ${T} SET secret = $3, key_id = $4 WHERE id = $1 AND secret = $2::jsonb RETURNING operator_id`, [id, JSON.stringify(before), JSON.stringify(after), after.kid]);
    if (rows[0]) await this.changed(rows[0].operator_id);
    return rows.length > 0;
  }

  /** Connections whose data key is wrapped by a key other than `currentKeyId`. */
  async wrappedByOtherKeys(currentKeyId: string, limit: number): Promise<ConnectionRow[]> {
    const rows = (await this.ds.query(`SELECT * FROM ${T} WHERE key_id <> $1 ORDER BY id LIMIT $2`, [currentKeyId, limit])) as ConnectionRow[];
    return rows.map(row);
  }

  async countByKey(): Promise<Record<string, number>> {
    const rows = (await this.ds.query(`SELECT key_id, count(*)::int AS n FROM ${T} GROUP BY key_id`)) as Array<{ key_id: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.key_id, Number(r.n)]));
  }

  async insertService(s: Omit<CustomServiceRow, 'created_at'>): Promise<boolean> {
    const { rows } = await runStatement(
      this.ds,
      `INSERT INTO ${S} (operator_id, service_id, name, base_url, auth_type, auth_name, allowed_hosts) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING RETURNING service_id`,
      [s.operator_id, s.service_id, s.name, s.base_url, s.auth_type, s.auth_name, JSON.stringify(s.allowed_hosts)],
    );
    const inserted = rows.length > 0;
    if (inserted) await this.changed(s.operator_id);
    return inserted;
  }

  async listServices(operatorId: string): Promise<CustomServiceRow[]> {
    return (await this.ds.query(`SELECT * FROM ${S} WHERE operator_id = $1 ORDER BY service_id`, [operatorId])) as CustomServiceRow[];
  }

  async findService(operatorId: string, serviceId: string): Promise<CustomServiceRow | undefined> {
    const rows = (await this.ds.query(`SELECT * FROM ${S} WHERE operator_id = $1 AND service_id = $2`, [operatorId, serviceId])) as CustomServiceRow[];
    return rows[0];
  }
}
