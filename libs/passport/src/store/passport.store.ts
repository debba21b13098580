/**
 * Every query of the passport service, behind one repository so the rules in PassportService
 * read as rules. Raw SQL on the service's own schema; callers pass a transaction's manager
 * when a write must commit together with its outbox rows.
 */
import { createHash } from 'node:crypto';

import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

import type { AgentView, Constraint, GrantView, PassportService as PassportServiceClaim } from '@stack/contracts';
import { Outbox, qualifiedTable, runStatement, schemaOf, type OutboxEventRow } from '@stack/persistence';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import type { CredentialSubject, RevocationEntry } from '@stack/security';

export interface PassportRow {
  jti: string;
  operator_id: string;
  agent_id: string;
  member_id: string;
  session_id: string;
  parent_jti: string | null;
  chain: string[];
  delegation_depth: number;
  issued_at_ms: number;
  expires_at: Date;
  intent_summary: string;
  intent_services: string[];
  services: PassportServiceClaim[];
  kid: string;
  /** The jti this passport was refreshed from (written, not read back by PASSPORT_COLUMNS). */
  refreshed_from?: string | null;
}

/** A live passport a revocation also kills by its jti. */
export interface LivePassport {
  jti: string;
  expires_at: Date;
}

interface AgentRow {
  id: string;
  operator_id: string;
  name: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

interface GrantRow {
  id: string;
  agent_id: string;
  connection_id: string;
  service_id: string;
  service_name: string;
  scopes: string[];
  constraints: Constraint[];
  created_at: Date;
}

function agentView(r: AgentRow): AgentView {
  return { id: r.id, operator_id: r.operator_id, name: r.name, description: r.description, created_at: new Date(r.created_at).toISOString(), updated_at: new Date(r.updated_at).toISOString() };
}

function grantView(r: GrantRow): GrantView {
  return { id: r.id, agent_id: r.agent_id, connection_id: r.connection_id, service_id: r.service_id, service_name: r.service_name, scopes: r.scopes, constraints: r.constraints, created_at: new Date(r.created_at).toISOString() };
}

/** bigint comes back from pg as a string: read it as a number (a millisecond timestamp fits). */
const PASSPORT_COLUMNS = 'jti, operator_id, agent_id, member_id, session_id, parent_jti, chain, delegation_depth, issued_at_ms::float8 AS issued_at_ms, expires_at, intent_summary, intent_services, services, kid';

type Runner = EntityManager | ServiceKit['dataSource'];

const KNOWN_AGENT_TTL_MS = 30_000;
const KNOWN_AGENT_LIMIT = 50_000;
const knownKey = (operatorId: string, agentId: string) => `${operatorId}\u0000${agentId}`;

/** The database's clock in whole milliseconds: one clock for every replica. */
const DB_NOW_MS = 'floor(extract(epoch FROM clock_timestamp()) * 1000)::float8';

/** The advisory lock ordering an operator's mints and subject revocations (a signed 64-bit integer, as a decimal string). */
function mintLockKey(operatorId: string): string {
  return createHash('sha256').update(`stack:passport:mints:${operatorId}`).digest().readBigInt64BE(0).toString();
}

@Injectable()
export class PassportStore {
  /** `operator\0agent id` → until when the id counts as known to exist (resolveAgents). */
  private readonly knownAgentIds = new Map<string, number>();

  constructor(@Inject(serviceKitToken('passport')) private readonly kit: ServiceKit) {}

  private t(name: string): string {
    return qualifiedTable(schemaOf(this.kit.dataSource), name);
  }

  transaction<T>(work: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.kit.dataSource.transaction(work);
  }

  async insertAgent(a: { id: string; operator_id: string; name: string; description: string | null; created_by: string | null }): Promise<AgentView> {
    const rows = (await this.kit.dataSource.query(`INSERT INTO ${this.t('agents')} (id, operator_id, name, description, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING *`, [
      a.id,
      a.operator_id,
      a.name,
      a.description,
      a.created_by,
    ])) as AgentRow[];
    return agentView(rows[0]!);
  }

  /** The agent of an approved OAuth client; nothing when the operator already has it (a redelivery, a second approval). */
  async insertClientAgent(m: EntityManager, a: { id: string; operator_id: string; name: string; description: string; created_by: string; client_id: string }): Promise<void> {
    await m.query(`INSERT INTO ${this.t('agents')} (id, operator_id, name, description, created_by, client_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, [
      a.id,
      a.operator_id,
      a.name,
      a.description,
      a.created_by,
      a.client_id,
    ]);
  }

  async agents(operatorId: string): Promise<AgentView[]> {
    const rows = (await this.kit.dataSource.query(`SELECT * FROM ${this.t('agents')} WHERE operator_id = $1 ORDER BY created_at, id`, [operatorId])) as AgentRow[];
    return rows.map(agentView);
  }

  async agent(operatorId: string, id: string): Promise<AgentView | undefined> {
    const rows = (await this.kit.dataSource.query(`SELECT * FROM ${this.t('agents')} WHERE operator_id = $1 AND id = $2`, [operatorId, id])) as AgentRow[];
    return rows[0] ? agentView(rows[0]) : undefined;
  }

  /**
   * Agents of the operator named by id or by name: each reference found → the agent's id. Ids
   * seen to exist are remembered for a while (ids are random and never reused), so addressing the
   * same agents again — every drop-off to a worker — costs no query. A deletion through this
   * service forgets the id once it commits (forgetAgent); one on another replica is noticed within KNOWN_AGENT_TTL_MS.
   */
  async resolveAgents(operatorId: string, refs: readonly string[]): Promise<Map<string, string>> {
    const now = Date.now();
    if (refs.length > 0 && refs.every((r) => (this.knownAgentIds.get(knownKey(operatorId, r)) ?? 0) > now)) return new Map(refs.map((r) => [r, r]));
    const rows = (await this.kit.dataSource.query(`SELECT id, name FROM ${this.t('agents')} WHERE operator_id = $1 AND (id = ANY($2::text[]) OR name = ANY($2::text[]))`, [operatorId, refs])) as Array<{ id: string; name: string }>;
    const found = new Map<string, string>();
    if (this.knownAgentIds.size > KNOWN_AGENT_LIMIT) this.knownAgentIds.clear();
    for (const r of rows) {
      if (refs.includes(r.id)) {
        found.set(r.id, r.id);
        this.knownAgentIds.set(knownKey(operatorId, r.id), now + KNOWN_AGENT_TTL_MS);
      }
      if (refs.includes(r.name)) found.set(r.name, r.id);
    }
    return found;
  }

  /** The agent an approved OAuth client is, in the operator (DESIGN.md §2; ClientAgentsConsumer records it). */
  async agentOfClient(operatorId: string, clientId: string): Promise<string | undefined> {
    const rows = (await this.kit.dataSource.query(`SELECT id FROM ${this.t('agents')} WHERE operator_id = $1 AND client_id = $2`, [operatorId, clientId])) as Array<{ id: string }>;
    return rows[0]?.id;
  }

  async updateAgent(operatorId: string, id: string, patch: { name?: string; description?: string }): Promise<AgentView | undefined> {
    const { rows } = await runStatement<AgentRow>(
      this.kit.dataSource,
      `UPDATE ${this.t('agents')} SET name = COALESCE($3, name), description = COALESCE($4, description), updated_at = now() WHERE operator_id = $1 AND id = $2 RETURNING *`,
      [operatorId, id, patch.name ?? null, patch.description ?? null],
    );
    const row = rows[0];
    return row ? agentView(row) : undefined;
  }

  /** Drops an agent id from what resolveAgents remembers. */
  forgetAgent(operatorId: string, id: string): void {
    this.knownAgentIds.delete(knownKey(operatorId, id));
  }

  async deleteAgent(m: EntityManager, operatorId: string, id: string): Promise<boolean> {
    const r = await runStatement(m, `DELETE FROM ${this.t('agents')} WHERE operator_id = $1 AND id = $2`, [operatorId, id]);
    return r.affected > 0;
  }

  async upsertGrant(m: EntityManager, g: Omit<GrantView, 'created_at'> & { operator_id: string }): Promise<GrantView> {
    const rows = (await m.query(
      `INSERT INTO ${this.t('agent_grants')} (id, operator_id, agent_id, connection_id, service_id, service_name, scopes, constraints) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)
       ON CONFLICT (agent_id, connection_id) DO UPDATE SET service_id = EXCLUDED.service_id, service_name = EXCLUDED.service_name, scopes = EXCLUDED.scopes, constraints = EXCLUDED.constraints
       RETURNING *`,
      [g.id, g.operator_id, g.agent_id, g.connection_id, g.service_id, g.service_name, JSON.stringify(g.scopes), JSON.stringify(g.constraints)],
    )) as GrantRow[];
    return grantView(rows[0]!);
  }

  /**
   * The agent's live passports that name the connection (its own, refreshed or delegated to it),
   * with what they hold, less those a jti revocation already names: what a grant change may have
   * to revoke (PassportService.grantAccess, removeGrant).
   */
  async livePassportsNamingConnection(on: Runner, operatorId: string, agentId: string, connectionId: string): Promise<Array<LivePassport & { services: PassportServiceClaim[] }>> {
    return (await on.query(
      `SELECT p.jti, p.expires_at, p.services FROM ${this.t('passports')} p
         WHERE p.agent_id = $2 AND p.operator_id = $1 AND p.expires_at > now() AND p.services @> jsonb_build_array(jsonb_build_object('connection_id', $3::text))
           AND NOT EXISTS (SELECT 1 FROM ${this.t('revocations')} r WHERE r.kind = 'jti' AND r.value = p.jti)`,
      [operatorId, agentId, connectionId],
    )) as Array<LivePassport & { services: PassportServiceClaim[] }>;
  }

  async grants(operatorId: string, agentId: string): Promise<GrantView[]> {
    const rows = (await this.kit.dataSource.query(`SELECT * FROM ${this.t('agent_grants')} WHERE operator_id = $1 AND agent_id = $2 ORDER BY connection_id`, [operatorId, agentId])) as GrantRow[];
    return rows.map(grantView);
  }

  async removeGrant(m: EntityManager, operatorId: string, agentId: string, connectionId: string): Promise<boolean> {
    const r = await runStatement(m, `DELETE FROM ${this.t('agent_grants')} WHERE operator_id = $1 AND agent_id = $2 AND connection_id = $3`, [operatorId, agentId, connectionId]);
    return r.affected > 0;
  }

  /** Records a minted passport and its events (its audit entry) in one statement. */
  async insertPassport(p: PassportRow, events: readonly OutboxEventRow[]): Promise<void> {
    await Outbox.withEvents(
      this.kit.dataSource,
      `INSERT INTO ${this.t('passports')} (jti, operator_id, agent_id, member_id, session_id, parent_jti, chain, delegation_depth, issued_at_ms, expires_at, intent_summary, intent_services, services, kid, refreshed_from)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14, $15) RETURNING jti`,
      [
        p.jti,
        p.operator_id,
        p.agent_id,
        p.member_id,
        p.session_id,
        p.parent_jti,
        JSON.stringify(p.chain),
        p.delegation_depth,
        p.issued_at_ms,
        p.expires_at,
        p.intent_summary,
        JSON.stringify(p.intent_services),
        JSON.stringify(p.services),
        p.kid,
        p.refreshed_from ?? null,
      ],
      events,
    );
  }

  async passport(jti: string): Promise<PassportRow | undefined> {
    const rows = (await this.kit.dataSource.query(`SELECT ${PASSPORT_COLUMNS} FROM ${this.t('passports')} WHERE jti = $1`, [jti])) as PassportRow[];
    return rows[0];
  }

  async activePassports(operatorId: string, filter: { agent_id?: string; session_id?: string }): Promise<PassportRow[]> {
    return (await this.kit.dataSource.query(
      `SELECT ${PASSPORT_COLUMNS} FROM ${this.t('passports')} WHERE operator_id = $1 AND expires_at > now() AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR session_id = $3) ORDER BY 9 DESC LIMIT 1000`,
      [operatorId, filter.agent_id ?? null, filter.session_id ?? null],
    )) as PassportRow[];
  }

  /** The agent's live passports issued at or before `issuedUpToMs`, without the listing's limit. */
  async livePassportsOfAgent(on: Runner, operatorId: string, agentId: string, issuedUpToMs: number): Promise<LivePassport[]> {
    return (await on.query(`SELECT jti, expires_at FROM ${this.t('passports')} WHERE agent_id = $2 AND operator_id = $1 AND expires_at > now() AND issued_at_ms <= $3`, [
      operatorId,
      agentId,
      issuedUpToMs,
    ])) as LivePassport[];
  }

  /** The member's live passports issued after `issuedAfterMs` that no jti revocation names yet. */
  async livePassportsOfMemberAfter(operatorId: string, memberId: string, issuedAfterMs: number): Promise<LivePassport[]> {
    return (await this.kit.dataSource.query(
      `SELECT p.jti, p.expires_at FROM ${this.t('passports')} p WHERE p.operator_id = $1 AND p.member_id = $2 AND p.expires_at > now() AND p.issued_at_ms > $3
         AND NOT EXISTS (SELECT 1 FROM ${this.t('revocations')} r WHERE r.kind = 'jti' AND r.value = p.jti)`,
      [operatorId, memberId, issuedAfterMs],
    )) as LivePassport[];
  }

  /** The live passports refreshed from this jti, transitively (a refresh of a refresh included). */
  async liveRefreshesOf(on: Runner, operatorId: string, jti: string): Promise<LivePassport[]> {
    return (await on.query(
      `WITH RECURSIVE r AS (
         SELECT jti, expires_at FROM ${this.t('passports')} WHERE refreshed_from = $2 AND operator_id = $1
         UNION
         SELECT p.jti, p.expires_at FROM ${this.t('passports')} p JOIN r ON p.refreshed_from = r.jti
       ) SELECT jti, expires_at FROM r WHERE expires_at > now()`,
      [operatorId, jti],
    )) as LivePassport[];
  }

  /** Whether this jti, or one it was refreshed from (transitively), has a jti revocation. */
  async lineageRevoked(jti: string): Promise<boolean> {
    const rows = (await this.kit.dataSource.query(
      `WITH RECURSIVE l AS (
         SELECT jti, refreshed_from FROM ${this.t('passports')} WHERE jti = $1
         UNION
         SELECT p.jti, p.refreshed_from FROM ${this.t('passports')} p JOIN l ON p.jti = l.refreshed_from
       ) SELECT 1 FROM ${this.t('revocations')} WHERE kind = 'jti' AND value IN (SELECT jti FROM l) LIMIT 1`,
      [jti],
    )) as unknown[];
    return rows.length > 0;
  }

  /**
   * When the refresh lineage of this jti began: the issue time (ms) of the passport it was
   * refreshed from, transitively — the root of the line, the earliest of its rows. Undefined if
   * the jti has no row.
   */
  async lineageIssuedAtMs(jti: string): Promise<number | undefined> {
    const rows = (await this.kit.dataSource.query(
      `WITH RECURSIVE l AS (
         SELECT jti, refreshed_from, issued_at_ms FROM ${this.t('passports')} WHERE jti = $1
         UNION
         SELECT p.jti, p.refreshed_from, p.issued_at_ms FROM ${this.t('passports')} p JOIN l ON p.jti = l.refreshed_from
       ) SELECT min(issued_at_ms)::float8 AS issued_at_ms FROM l`,
      [jti],
    )) as { issued_at_ms: number | null }[];
    const v = rows[0]?.issued_at_ms;
    return v === null || v === undefined ? undefined : Number(v);
  }

  async sessionExists(operatorId: string, sessionId: string): Promise<boolean> {
    const rows = (await this.kit.dataSource.query(`SELECT 1 FROM ${this.t('passports')} WHERE operator_id = $1 AND session_id = $2 LIMIT 1`, [operatorId, sessionId])) as unknown[];
    return rows.length > 0;
  }

  /**
   * The moment a passport of the operator is minted at (`issued_at_ms`), read on the database's
   * clock while holding the operator's mint lock shared (see revocationTime). One statement, so
   * the lock is released as soon as the clock is read.
   */
  async mintTime(operatorId: string): Promise<number> {
    // MATERIALIZED: the clock is read from the lock's row, so only once the lock is held.
    const rows = (await this.kit.dataSource.query(`WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared($1::bigint)) SELECT ${DB_NOW_MS} AS now_ms FROM l`, [mintLockKey(operatorId)])) as { now_ms: number }[];
    return Number(rows[0]!.now_ms);
  }

  /**
   * The moment a subject revocation of the operator is stamped with (`revoked_at_ms`): the
   * database's clock, read after taking the operator's mint lock exclusively, which `m`'s
   * transaction holds until it commits. So no mint stamps between this stamp and the commit: one
   * stamped before it is killed (issued at or before), one stamped after it finds the revocation
   * committed. One clock and one lock in the database hold across replicas, whatever their own
   * clocks say; on the embedded database transactions run one at a time, which orders them alike.
   */
  async revocationTime(m: EntityManager, operatorId: string): Promise<number> {
    // Outside a transaction the lock would be released before the revocation is written.
    if (!m.queryRunner?.isTransactionActive) throw new Error('revocationTime must be called with the EntityManager of an open transaction');
    await m.query('SELECT pg_advisory_xact_lock($1::bigint)', [mintLockKey(operatorId)]);
    const rows = (await m.query(`SELECT ${DB_NOW_MS} AS now_ms`)) as { now_ms: number }[];
    return Number(rows[0]!.now_ms);
  }

  /** Whether a stored revocation kills the credential: the live set's predicates (jti and chain; a subject revoked at or after its issue), read from the database. */
  async revoked(s: CredentialSubject): Promise<boolean> {
    const pairs: [string, string | undefined][] = [
      ...[s.jti, ...(s.chain ?? [])].map((jti): [string, string | undefined] => ['jti', jti]),
      ['agent', s.agent_id],
      ['session', s.session_id],
      ['member', s.member_id],
      ['operator', s.operator_id],
    ];
    const known = pairs.filter((p): p is [string, string] => p[1] !== undefined);
    const rows = (await this.kit.dataSource.query(
      `SELECT 1 FROM ${this.t('revocations')} r JOIN unnest($1::text[], $2::text[]) AS s(kind, value) ON r.value = s.value AND r.kind = s.kind WHERE r.kind = 'jti' OR r.revoked_at_ms >= $3 LIMIT 1`,
      [known.map((p) => p[0]), known.map((p) => p[1]), s.issued_at_ms],
    )) as unknown[];
    return rows.length > 0;
  }

  async insertRevocation(on: Runner, e: RevocationEntry): Promise<void> {
    await on.query(
      `INSERT INTO ${this.t('revocations')} (id, kind, value, operator_id, revoked_at_ms, expires_at_ms, reason) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
      [e.id, e.kind, e.value, e.operator_id, e.revoked_at_ms, e.expires_at_ms, e.reason ?? null],
    );
  }

  async liveRevocations(nowMs: number): Promise<RevocationEntry[]> {
    const rows = (await this.kit.dataSource.query(
      `SELECT id, kind, value, operator_id, revoked_at_ms::float8 AS revoked_at_ms, expires_at_ms::float8 AS expires_at_ms, reason FROM ${this.t('revocations')} WHERE expires_at_ms > $1`,
      [nowMs],
    )) as (RevocationEntry & { reason: string | null })[];
    return rows.map((r) => ({ id: r.id, kind: r.kind, value: r.value, operator_id: r.operator_id, revoked_at_ms: Number(r.revoked_at_ms), expires_at_ms: Number(r.expires_at_ms), ...(r.reason ? { reason: r.reason } : {}) }));
  }
}
