/**
 * SQL of drop-offs. Every query names the operator, so another operator's drop-off is simply
 * not there. State changes are single statements guarded by the status they leave, so two
 * collectors (or a collector and the sweeper) can never both win.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

import { qualifiedTable, schemaOf } from '@stack/persistence';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import type { SealedSecret } from '@stack/security';

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

type Runner = Pick<EntityManager, 'query'>;

/** TypeORM answers UPDATE … RETURNING on Postgres with `[rows, count]`. */
function rowsOf(result: unknown): DropoffRow[] {
  if (Array.isArray(result) && result.length === 2 && Array.isArray(result[0]) && typeof result[1] === 'number') return result[0] as DropoffRow[];
  return Array.isArray(result) ? (result as DropoffRow[]) : [];
}

@Injectable()
export class DropoffStore {
  constructor(@Inject(serviceKitToken('passport')) private readonly kit: ServiceKit) {}

  private get table(): string {
    return qualifiedTable(schemaOf(this.kit.dataSource), 'dropoffs');
  }

  private get agents(): string {
    return qualifiedTable(schemaOf(this.kit.dataSource), 'agents');
  }

  transaction<T>(work: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.kit.dataSource.transaction(work);
  }

  /** Agents of the operator named by id or by name: the ones found. */
  async resolveAgents(operatorId: string, refs: readonly string[]): Promise<Map<string, string>> {
    const rows = (await this.kit.dataSource.query(`SELECT id, name FROM ${this.agents} WHERE operator_id = $1 AND (id = ANY($2::text[]) OR name = ANY($2::text[]))`, [operatorId, refs])) as Array<{ id: string; name: string }>;
    const found = new Map<string, string>();
    for (const r of rows) {
      if (refs.includes(r.id)) found.set(r.id, r.id);
      if (refs.includes(r.name)) found.set(r.name, r.id);
    }
    return found;
  }

  /** The agent an approved OAuth client is, in the operator (DESIGN.md §2). */
  async agentOfClient(operatorId: string, clientId: string): Promise<string | undefined> {
    const rows = (await this.kit.dataSource.query(`SELECT id FROM ${this.agents} WHERE operator_id = $1 AND client_id = $2`, [operatorId, clientId])) as Array<{ id: string }>;
    return rows[0]?.id;
  }

  async insert(m: Runner, d: Omit<DropoffRow, 'created_at' | 'deposited_at' | 'collected_at' | 'collected_by'>): Promise<DropoffRow> {
    const rows = rowsOf(
      await m.query(
        `INSERT INTO ${this.table} (id, operator_id, status, to_agents, schema_json, schema_hash, created_by_member, created_by_agent, created_by_client, creator_key, ciphertext, payload_bytes, expires_at, deposited_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $3 = 'deposited' THEN now() END) RETURNING *`,
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
      ),
    );
    return rows[0]!;
  }

  async find(operatorId: string, id: string, m?: Runner, lock = false): Promise<DropoffRow | undefined> {
    const rows = (await (m ?? this.kit.dataSource).query(`SELECT * FROM ${this.table} WHERE operator_id = $1 AND id = $2${lock ? ' FOR UPDATE' : ''}`, [operatorId, id])) as DropoffRow[];
    return rows[0];
  }

  /** created → deposited, only while open; the row, or nothing when it was not open any more. */
  async deposit(m: Runner, operatorId: string, id: string, ciphertext: SealedSecret, bytes: number): Promise<DropoffRow | undefined> {
    return rowsOf(
      await m.query(
        `UPDATE ${this.table} SET status = 'deposited', ciphertext = $3, payload_bytes = $4, deposited_at = now()
         WHERE operator_id = $1 AND id = $2 AND status = 'created' AND expires_at > now() RETURNING *`,
        [operatorId, id, JSON.stringify(ciphertext), bytes],
      ),
    )[0];
  }

  /** deposited → collected: the ciphertext is destroyed by the same statement. */
  async markCollected(m: Runner, operatorId: string, id: string, agentId: string): Promise<DropoffRow | undefined> {
    return rowsOf(
      await m.query(
        `UPDATE ${this.table} SET status = 'collected', ciphertext = NULL, collected_at = now(), collected_by = $3
         WHERE operator_id = $1 AND id = $2 AND status = 'deposited' RETURNING *`,
        [operatorId, id, agentId],
      ),
    )[0];
  }

  /** Open drop-offs past their expiry → expired, ciphertext purged; at most `limit`, skipping rows another replica holds. */
  async expireDue(m: Runner, limit: number, operatorId?: string, id?: string): Promise<DropoffRow[]> {
    const only = operatorId && id ? ' AND operator_id = $2 AND id = $3' : '';
    return rowsOf(
      await m.query(
        `UPDATE ${this.table} SET status = 'expired', ciphertext = NULL
         WHERE id IN (SELECT id FROM ${this.table} WHERE status IN ('created', 'deposited') AND expires_at <= now()${only} ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING *`,
        operatorId && id ? [limit, operatorId, id] : [limit],
      ),
    );
  }
}
