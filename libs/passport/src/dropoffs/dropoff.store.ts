/**
 * SQL of drop-offs. Every query names the operator, so another operator's drop-off is simply
 * not there. State changes are single statements guarded by the status they leave, so two
 * collectors (or a collector and the sweeper) can never both win.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { DataSource, EntityManager } from 'typeorm';

import { Outbox, qualifiedTable, runStatement, schemaOf, type OutboxEventRow } from '@stack/persistence';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import type { RewrapStore, SealedRow, SealedSecret } from '@stack/security';

import type { DropoffStatus } from '@stack/contracts';

export interface DropoffRow {
  id: string;
  operator_id: string;
  status: DropoffStatus;
  to_agents: string[];
  schema_json: string;
  schema_hash: string;
  created_by_member: string | null;
  created_by_agent: string | null;
  created_by_client: string | null;
  creator_key: string;
  ciphertext: SealedSecret | null;
  payload_bytes: number | null;
  created_at: Date;
  expires_at: Date;
  deposited_at: Date | null;
  collected_at: Date | null;
  collected_by: string | null;
}

/**
 * Deposited payloads as sealed values, for master-key rotation (KeyRotation): only a deposited
 * drop-off holds a ciphertext; a swap applies only while it is still deposited and unchanged.
 */
export class DropoffKeyStore implements RewrapStore {
  constructor(private readonly ds: DataSource) {}

  private get table(): string {
    return qualifiedTable(schemaOf(this.ds), 'dropoffs');
  }

  async wrappedByOtherKeys(currentKeyId: string, limit: number): Promise<SealedRow[]> {
    return (await this.ds.query(`SELECT id, operator_id, ciphertext AS secret FROM ${this.table} WHERE status = 'deposited' AND ciphertext->>'kid' <> $1 ORDER BY id LIMIT $2`, [currentKeyId, limit])) as SealedRow[];
  }

  async swapSecret(id: string, before: SealedSecret, after: SealedSecret): Promise<boolean> {
    const { rows } = await runStatement(this.ds, `UPDATE ${this.table} SET ciphertext = $3 WHERE id = $1 AND status = 'deposited' AND ciphertext = $2::jsonb RETURNING id`, [id, JSON.stringify(before), JSON.stringify(after)]);
    return rows.length > 0;
  }

  async countByKey(): Promise<Record<string, number>> {
    const rows = (await this.ds.query(`SELECT ciphertext->>'kid' AS key_id, count(*)::int AS n FROM ${this.table} WHERE status = 'deposited' GROUP BY 1`)) as Array<{ key_id: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.key_id, Number(r.n)]));
  }
}

/**
 * Every column but the ciphertext: what the writes below return. The ciphertext a write stored is
 * the one its caller just sealed (or NULL), so it is not sent back: read back from jsonb and
 * parsed again it made up ~15 % of a deposit's cost.
 */
const ROW_WITHOUT_CIPHERTEXT =
  'id, operator_id, status, to_agents, schema_json, schema_hash, created_by_member, created_by_agent, created_by_client, creator_key, payload_bytes, created_at, expires_at, deposited_at, collected_at, collected_by';

@Injectable()
export class DropoffStore {
  constructor(@Inject(serviceKitToken('passport')) private readonly kit: ServiceKit) {}

  private get table(): string {
    return qualifiedTable(schemaOf(this.kit.dataSource), 'dropoffs');
  }

  transaction<T>(work: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.kit.dataSource.transaction(work);
  }

  /** Inserts a drop-off and its events (audit entry, `deposited` when it carries a payload) in one statement. */
  async insert(d: Omit<DropoffRow, 'created_at' | 'deposited_at' | 'collected_at' | 'collected_by'>, events: readonly OutboxEventRow[]): Promise<DropoffRow> {
    const rows = await Outbox.withEvents<Omit<DropoffRow, 'ciphertext'>>(
      this.kit.dataSource,
      `INSERT INTO ${this.table} (id, operator_id, status, to_agents, schema_json, schema_hash, created_by_member, created_by_agent, created_by_client, creator_key, ciphertext, payload_bytes, expires_at, deposited_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $3 = 'deposited' THEN now() END) RETURNING ${ROW_WITHOUT_CIPHERTEXT}`,
      [
        d.id,
        d.operator_id,
        d.status,
        JSON.stringify(d.to_agents),
        d.schema_json,
        d.schema_hash,
        d.created_by_member,
        d.created_by_agent,
        d.created_by_client,
        d.creator_key,
        d.ciphertext ? JSON.stringify(d.ciphertext) : null,
        d.payload_bytes,
        d.expires_at,
      ],
      events,
    );
    return { ...rows[0]!, ciphertext: d.ciphertext };
  }

  async find(operatorId: string, id: string): Promise<DropoffRow | undefined> {
    const rows = (await this.kit.dataSource.query(`SELECT * FROM ${this.table} WHERE operator_id = $1 AND id = $2`, [operatorId, id])) as DropoffRow[];
    return rows[0];
  }

  /** created → deposited, only while open, with its events in the same statement; the row, or nothing when it was not open any more. */
  async deposit(operatorId: string, id: string, ciphertext: SealedSecret, bytes: number, events: readonly OutboxEventRow[]): Promise<DropoffRow | undefined> {
    const rows = await Outbox.withEvents<Omit<DropoffRow, 'ciphertext'>>(
      this.kit.dataSource,
      `UPDATE ${this.table} SET status = 'deposited', ciphertext = $3, payload_bytes = $4, deposited_at = now()
       WHERE operator_id = $1 AND id = $2 AND status = 'created' AND expires_at > now() RETURNING ${ROW_WITHOUT_CIPHERTEXT}`,
      [operatorId, id, JSON.stringify(ciphertext), bytes],
      events,
    );
    return rows[0] && { ...rows[0], ciphertext };
  }

  /**
   * deposited → collected, only while deposited and unexpired: the ciphertext is destroyed and
   * the events written by the same statement. Of concurrent collectors exactly one gets the row.
   */
  async markCollected(operatorId: string, id: string, agentId: string, events: readonly OutboxEventRow[]): Promise<DropoffRow | undefined> {
    const rows = await Outbox.withEvents<Omit<DropoffRow, 'ciphertext'>>(
      this.kit.dataSource,
      `UPDATE ${this.table} SET status = 'collected', ciphertext = NULL, collected_at = now(), collected_by = $3
       WHERE operator_id = $1 AND id = $2 AND status = 'deposited' AND expires_at > now() RETURNING ${ROW_WITHOUT_CIPHERTEXT}`,
      [operatorId, id, agentId],
      events,
    );
    return rows[0] && { ...rows[0], ciphertext: null };
  }

  /** Open drop-offs past their expiry → expired, ciphertext purged; at most `limit`, skipping rows another replica holds. */
  async expireDue(m: EntityManager, limit: number, operatorId?: string, id?: string): Promise<DropoffRow[]> {
    const only = operatorId && id ? ' AND operator_id = $2 AND id = $3' : '';
    const { rows } = await runStatement<DropoffRow>(
      m,
      `UPDATE ${this.table} SET status = 'expired', ciphertext = NULL
       WHERE id IN (SELECT id FROM ${this.table} WHERE status IN ('created', 'deposited') AND expires_at <= now()${only} ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      operatorId && id ? [limit, operatorId, id] : [limit],
    );
    return rows;
  }
}
