/**
 * The rules of agents, grants, passports and revocation (DESIGN.md §3, §4). Every entry point
 * takes the authenticated caller (a signed caller context: from the bus, or resolved from a
 * REST request) and serves REST and bus alike. State changes commit with their outbox rows
 * (audit, revocation) in one transaction; a revocation is then applied to this node at once
 * and published straight away too (same id, so the relay's later copy is dropped as a duplicate).
 */
import { randomBytes } from 'node:crypto';

import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

import {
  AGENT_NAME_MAX,
  AGENT_NAME_PATTERN,
  CONSTRAINT_OPS,
  MAX_CONSTRAINTS_PER_CONNECTION,
  MAX_CONSTRAINT_PATTERN,
  MAX_DELEGATION_DEPTH,
  MAX_INTENT_SUMMARY,
  PASSPORT_TTL,
  RevocationRecordedEvent,
  StackError,
  type AgentView,
  type CallerContext,
  type Constraint,
  type DelegatePassportInput,
  type GrantView,
  type IssuePassportInput,
  type IssuedPassport,
  type PassportClaims,
  type PassportService as PassportServiceClaim,
  type PassportSummary,
  type RequestedService,
  type VerifyPassportResult,
} from '@stack/contracts';
import { Outbox } from '@stack/persistence';
import { RevocationHost, serviceKitToken, type AuditEntryInput, type ServiceKit } from '@stack/runtime';
import { PassportVerifier, signPassport, type RevocationEntry, type RevocationKind, type VerifiedPassport } from '@stack/security';

import { SigningKeys } from '../keys/signing-keys.service';
import { PassportStore, type LivePassport, type PassportRow } from '../store/passport.store';

/** A subject revocation must outlive every credential it could kill: the longest TTL, plus margin for clock skew. */
const SUBJECT_REVOCATION_LIFETIME_MS = PASSPORT_TTL.maxSeconds * 1000 + 5 * 60_000;
const NAME_RE = new RegExp(AGENT_NAME_PATTERN);

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString('base64url')}`;
}

export type RevokeTarget = { kind: 'jti'; value: string } | { kind: 'agent'; value: string } | { kind: 'session'; value: string } | { kind: 'operator' };

@Injectable()
export class PassportService {
  readonly verifier: PassportVerifier;
  private readonly audience: string;

  constructor(
    @Inject(serviceKitToken('passport')) private readonly kit: ServiceKit,
    private readonly store: PassportStore,
    private readonly keys: SigningKeys,
    private readonly revocations: RevocationHost,
  ) {
    this.audience = kit.config.publicUrl;
    this.verifier = new PassportVerifier({ audience: this.audience, keys: (kid) => keys.publicKey(kid), revocations: revocations.state });
  }

  // ---- agents and grants ----

  async registerAgent(caller: CallerContext, input: { name: string; description?: string }): Promise<AgentView> {
    const operatorId = requireOperator(caller, 'stack:passports');
    checkAgentName(input.name);
    try {
      return await this.store.insertAgent({ id: newId('agt'), operator_id: operatorId, name: input.name, description: input.description ?? null, created_by: caller.member_id ?? null });
    } catch (err) {
      if (isUniqueViolation(err)) throw new StackError('INVALID_REQUEST', `an agent named '${input.name}' already exists`, { field: 'name' });
      throw err;
    }
  }

  listAgents(caller: CallerContext): Promise<AgentView[]> {
    return this.store.agents(requireOperator(caller, 'stack:passports'));
  }

  async getAgent(caller: CallerContext, agentId: string): Promise<AgentView> {
    return this.agentOrNotFound(requireOperator(caller, 'stack:passports'), agentId);
  }

  async updateAgent(caller: CallerContext, input: { agent_id: string; name?: string; description?: string }): Promise<AgentView> {
    const operatorId = requireOperator(caller, 'stack:passports');
    if (input.name !== undefined) checkAgentName(input.name);
    try {
      const updated = await this.store.updateAgent(operatorId, input.agent_id, input);
      if (!updated) throw notFound('agent');
      return updated;
    } catch (err) {
      if (isUniqueViolation(err)) throw new StackError('INVALID_REQUEST', `an agent named '${input.name}' already exists`, { field: 'name' });
      throw err;
    }
  }

  /** Deletes the agent and its grants, and revokes every passport it holds, in one transaction. */
  async deleteAgent(caller: CallerContext, agentId: string): Promise<{ deleted: boolean }> {
    const operatorId = requireOperator(caller, 'stack:admin');
    await this.agentOrNotFound(operatorId, agentId);
    const written = await this.store.transaction(async (m) => {
      const entry = this.subjectEntry('agent', agentId, operatorId, await this.store.revocationTime(m, operatorId), 'agent deleted');
      await this.store.deleteAgent(m, operatorId, agentId);
      const entries = [entry, ...this.jtiEntries(entry, await this.livePassportsKilledBy(m, entry))];
      await this.writeRevocations(m, entries);
      await this.kit.audit.enqueue(m, { caller, layer: 'passport', action: 'agent.delete', outcome: 'success', agent_id: agentId });
      return entries;
    });
    // Again after the commit: a lookup that ran while the transaction was open may have remembered the id.
    this.store.forgetAgent(operatorId, agentId);
    await this.afterRevocation(written);
    await this.revokeLateComers(written[0]!, written);
    return { deleted: true };
  }

  async grantAccess(caller: CallerContext, input: { agent_id: string; connection_id: string; service_id?: string; service_name?: string; scopes: string[]; constraints?: Constraint[] }): Promise<GrantView> {
    const operatorId = requireOperator(caller, 'stack:admin');
    requireAllowedConnection(caller, input.connection_id);
    await this.agentOrNotFound(operatorId, input.agent_id);
    const constraints = mergeConstraints(input.connection_id, input.constraints ?? []);
    // The connection belongs to the credential proxy; until it answers on the bus (issue 6) its
    // id and service are taken as given, shape-checked by the contract's patterns.
    const serviceId = input.service_id ?? input.connection_id;
    const { grant, written } = await this.store.transaction(async (m) => {
      const grant = await this.store.upsertGrant(m, {
        id: newId('grt'),
        operator_id: operatorId,
        agent_id: input.agent_id,
        connection_id: input.connection_id,
        service_id: serviceId,
        service_name: input.service_name ?? serviceId,
        scopes: unique(input.scopes),
        constraints,
      });
      // A narrowing takes, at once, the live passports the grant no longer covers (each audited); a widening none.
      const written = await this.revokeBeyondGrant(m, caller, operatorId, input.agent_id, grant, 'grant narrowed');
      return { grant, written };
    });
    await this.afterGrantChange(caller, operatorId, input.agent_id, grant, written, 'grant narrowed');
    return grant;
  }

  async listGrants(caller: CallerContext, agentId: string): Promise<GrantView[]> {
    const operatorId = requireOperator(caller, 'stack:passports');
    await this.agentOrNotFound(operatorId, agentId);
    return this.store.grants(operatorId, agentId);
  }

  async removeGrant(caller: CallerContext, agentId: string, connectionId: string): Promise<{ removed: boolean }> {
    const operatorId = requireOperator(caller, 'stack:admin');
    requireAllowedConnection(caller, connectionId);
    await this.agentOrNotFound(operatorId, agentId);
    const written = await this.store.transaction(async (m) => {
      if (!(await this.store.removeGrant(m, operatorId, agentId, connectionId))) throw notFound('grant');
      await this.kit.audit.enqueue(m, { caller, layer: 'passport', action: 'agent.grant_remove', outcome: 'success', agent_id: agentId, target: { connection: connectionId } });
      // Every live passport of the agent naming the connection dies with the grant, and so what was delegated from them (chain).
      return this.revokeBeyondGrant(m, caller, operatorId, agentId, { connection_id: connectionId }, 'grant removed');
    });
    await this.afterGrantChange(caller, operatorId, agentId, { connection_id: connectionId }, written, 'grant removed');
    return { removed: true };
  }

  /**
   * Revokes by jti, in the grant change's transaction `m`, the agent's live passports naming the
   * grant's connection that it no longer covers (`coveredBy`; a removed grant — no scopes given —
   * covers none), with an audit entry each as a revocation by jti has. Their children die through
   * the chain check, the passports refreshed from them through the refresh lineage.
   */
  private async revokeBeyondGrant(
    m: EntityManager,
    caller: CallerContext,
    operatorId: string,
    agentId: string,
    grant: Pick<GrantView, 'connection_id'> & Partial<Pick<GrantView, 'scopes' | 'constraints'>>,
    reason: string,
  ): Promise<RevocationEntry[]> {
    const live = await this.store.livePassportsNamingConnection(m, operatorId, agentId, grant.connection_id);
    const beyond = live.filter((p) => !p.services.filter((s) => s.connection_id === grant.connection_id).every((s) => coveredBy(s, grant)));
    if (!beyond.length) return [];
    const entries = this.jtiEntries({ operator_id: operatorId, revoked_at_ms: Date.now(), reason }, beyond);
    await this.writeRevocations(m, entries);
    for (const e of entries) {
      await this.kit.audit.enqueue(m, { caller, layer: 'passport', action: 'passport.revoke_passport', outcome: 'success', passport_jti: e.value, agent_id: agentId, target: { connection: grant.connection_id } });
    }
    return entries;
  }

  /**
   * After a grant change commits: its revocations applied here and published, then the live
   * passports looked for once more — one minted meanwhile (its row written after the
   * transaction's read, its own check of the grant before the commit) was not in that read (those
   * just revoked are not live any more). A mint that checks the grant after the commit finds the
   * change itself (`mint`).
   */
  private async afterGrantChange(caller: CallerContext, operatorId: string, agentId: string, grant: Pick<GrantView, 'connection_id'> & Partial<Pick<GrantView, 'scopes' | 'constraints'>>, written: RevocationEntry[], reason: string): Promise<void> {
    await this.afterRevocation(written);
    const late = await this.store.transaction((m) => this.revokeBeyondGrant(m, caller, operatorId, agentId, grant, reason));
    await this.afterRevocation(late);
  }

  // ---- passports ----

  async issue(caller: CallerContext, input: IssuePassportInput): Promise<IssuedPassport> {
    const operatorId = requireOperator(caller, 'stack:passports');
    if (!caller.member_id) throw new StackError('FORBIDDEN', 'a passport is issued on behalf of a member; this caller has none');
    const ttl = input.ttl_seconds ?? PASSPORT_TTL.defaultSeconds;
    if (!Number.isInteger(ttl) || ttl < PASSPORT_TTL.minSeconds || ttl > PASSPORT_TTL.maxSeconds) {
      throw new StackError('INVALID_REQUEST', `ttl_seconds must be from ${PASSPORT_TTL.minSeconds} to ${PASSPORT_TTL.maxSeconds}`, { field: 'ttl_seconds' });
    }
    checkIntent(input.intent_summary);
    checkServiceList(input.services ?? []);
    for (const req of input.services ?? []) requireAllowedConnection(caller, req.connection_id);
    // Stamped before the reads: a subject revocation committed while they run is stamped later, so it kills the passport.
    const now = await this.store.mintTime(operatorId);
    const agent = await this.agentOrNotFound(operatorId, input.agent_id);
    const grants = await this.store.grants(operatorId, agent.id);
    // No services asked: the agent's grants, less those outside a limited caller's connections.
    const services = input.services ? input.services.map((req) => narrowToGrant(req, grants)) : grants.filter((g) => mayUseConnection(caller, g.connection_id)).map((g) => serviceOf(g, g.scopes, g.constraints));
    return this.mint(caller, {
      operatorId,
      agent,
      memberId: caller.member_id,
      sessionId: caller.session_id ?? newId('ses'),
      chain: [],
      nowMs: now,
      exp: Math.floor(now / 1000) + ttl,
      intentSummary: input.intent_summary ?? '',
      intentServices: input.intent_services ?? [],
      services,
      action: 'passport.issue',
    });
  }

  async delegate(caller: CallerContext | undefined, input: DelegatePassportInput): Promise<IssuedPassport> {
    const parent = await this.verifyForUse(input.parent_token, 'passport.delegate');
    const p = parent.claims;
    if (caller?.operator_id && caller.operator_id !== p.stk.operator_id) throw new StackError('FORBIDDEN', 'the parent passport belongs to another operator');
    if (caller && caller.kind !== 'system' && !caller.scopes.includes('stack:passports')) throw new StackError('FORBIDDEN', 'this needs the stack:passports scope');
    if (p.stk.delegation_depth >= MAX_DELEGATION_DEPTH) {
      await this.recordDenied(p, 'passport.delegate', 'DELEGATION_DEPTH_EXCEEDED');
      throw new StackError('DELEGATION_DEPTH_EXCEEDED', `a passport can be delegated at most ${MAX_DELEGATION_DEPTH} times`, { max_depth: MAX_DELEGATION_DEPTH });
    }
    checkIntent(input.intent_summary);
    checkServiceList(input.services);
    const now = await this.mintTimeFrom(parent, 'passport.delegate');
    const child = await this.agentOrNotFound(p.stk.operator_id, input.child_agent_id);
    const childGrants = await this.store.grants(p.stk.operator_id, child.id);
    const services: PassportServiceClaim[] = [];
    try {
      for (const req of input.services) {
        const held = p.stk.services.find((s) => s.connection_id === req.connection_id);
        if (!held) throw escalation(`the parent passport does not hold connection ${req.connection_id}`, req.connection_id);
        requireAllowedConnection(caller, req.connection_id);
        const extra = req.scopes.filter((s) => !held.scopes.includes(s));
        if (extra.length) throw escalation(`the parent passport does not hold scopes ${extra.join(', ')} on ${req.connection_id}`, req.connection_id);
        const grant = childGrants.find((g) => g.connection_id === req.connection_id);
        if (!grant) throw escalation(`agent ${child.id} has no grant of connection ${req.connection_id}`, req.connection_id);
        const notGranted = req.scopes.filter((s) => !grant.scopes.includes(s));
        if (notGranted.length) throw escalation(`agent ${child.id} was not granted scopes ${notGranted.join(', ')} on ${req.connection_id}`, req.connection_id);
        // Every parent constraint, the child's own baseline, then what this delegation adds.
        const constraints = mergeConstraints(req.connection_id, [...held.constraints, ...grant.constraints, ...(req.constraints ?? [])]);
        services.push({ connection_id: held.connection_id, service_id: held.service_id, service_name: held.service_name, scopes: unique(req.scopes), constraints });
      }
    } catch (err) {
      if (err instanceof StackError && err.code === 'SCOPE_ESCALATION') await this.recordDenied(p, 'passport.delegate', 'SCOPE_ESCALATION');
      throw err;
    }
    const ttl = childTtl(input.ttl_seconds, Math.floor((parent.expiresAtMs - now) / 1000));
    return this.mint(caller, {
      operatorId: p.stk.operator_id,
      agent: child,
      memberId: p.stk.member_id,
      sessionId: p.stk.session_id,
      chain: [...p.stk.chain, p.jti],
      nowMs: now,
      exp: Math.min(p.exp, Math.floor(now / 1000) + ttl),
      intentSummary: input.intent_summary ?? p.stk.intent_summary,
      intentServices: p.stk.intent_services,
      services,
      action: 'passport.delegate',
    });
  }

  /**
   * A fresh passport in place of a live one: same agent, session, chain and services (re-checked
   * against today's grants). The new passport has its own jti and records the one it was
   * refreshed from (`refreshed_from`); revoking a jti also writes jti entries for the live
   * passports refreshed from it, so they and their children die through the usual jti and
   * `chain` checks. The lineage lives in the database, read when revoking and refreshing: the
   * verifier's check stays one lookup per jti of the passport and its chain, and depth never grows.
   * Refresh needs no credential but the passport, so a root's lineage has an absolute lifetime
   * (STACK_PASSPORT_MAX_LIFETIME_SECONDS from its first issue): a refresh is cut to what is left,
   * and refused with PASSPORT_EXPIRED once nothing is; a child stays within its parent's expiry.
   */
  async refresh(caller: CallerContext | undefined, input: { token: string; ttl_seconds?: number }): Promise<IssuedPassport> {
    const current = await this.verifyForUse(input.token, 'passport.refresh');
    const c = current.claims;
    if (caller?.operator_id && caller.operator_id !== c.stk.operator_id) throw new StackError('FORBIDDEN', 'the passport belongs to another operator');
    for (const s of c.stk.services) requireAllowedConnection(caller, s.connection_id);
    const now = await this.mintTimeFrom(current, 'passport.refresh');
    // A root's lineage ends a fixed time after its first passport was issued, however often it is refreshed.
    const lineageEnd = c.stk.chain.length === 0 ? await this.lineageEnd(current, now) : undefined;
    const agent = await this.agentOrNotFound(c.stk.operator_id, c.stk.agent_id);
    const grants = await this.store.grants(c.stk.operator_id, agent.id);
    const services = c.stk.services.map((s) => ({ ...narrowToGrant({ connection_id: s.connection_id, scopes: s.scopes }, grants), constraints: mergeConstraints(s.connection_id, [...s.constraints, ...(grants.find((g) => g.connection_id === s.connection_id)?.constraints ?? [])]) }));
    let exp: number;
    if (c.stk.chain.length === 0) {
      const ttl = input.ttl_seconds ?? PASSPORT_TTL.defaultSeconds;
      if (!Number.isInteger(ttl) || ttl < PASSPORT_TTL.minSeconds || ttl > PASSPORT_TTL.maxSeconds) throw new StackError('INVALID_REQUEST', `ttl_seconds must be from ${PASSPORT_TTL.minSeconds} to ${PASSPORT_TTL.maxSeconds}`, { field: 'ttl_seconds' });
      // Asking for more than the lineage has left is not an error: the answer is cut to what is left.
      exp = Math.min(Math.floor(now / 1000) + ttl, lineageEnd!);
    } else {
      // A child never outlives its parent, refreshed or not.
      const parent = await this.store.passport(c.stk.chain[c.stk.chain.length - 1]!);
      const parentExp = parent ? Math.floor(new Date(parent.expires_at).getTime() / 1000) : c.exp;
      exp = Math.floor(now / 1000) + childTtl(input.ttl_seconds, parentExp - Math.floor(now / 1000));
    }
    const issued = await this.mint(caller, {
      operatorId: c.stk.operator_id,
      agent,
      memberId: c.stk.member_id,
      sessionId: c.stk.session_id,
      chain: c.stk.chain,
      nowMs: now,
      exp,
      intentSummary: c.stk.intent_summary,
      intentServices: c.stk.intent_services,
      services,
      action: 'passport.refresh',
      refreshedFrom: c.jti,
    });
    // A revocation of this lineage that committed after the check above but before the new row
    // could not see it: looked up now, after the row (the revoker looks again after its commit).
    if (await this.store.lineageRevoked(issued.jti)) await this.revokeMinted(c.stk.operator_id, issued, 'refreshed from a revoked passport');
    return issued;
  }

  /**
   * The last second (`exp`) a passport refreshed from this root lineage may reach: the issue time
   * of the lineage's first passport (read from the store, as the token names only its own) plus
   * STACK_PASSPORT_MAX_LIFETIME_SECONDS. Nothing left: PASSPORT_EXPIRED, audited.
   */
  private async lineageEnd(current: VerifiedPassport, nowMs: number): Promise<number> {
    const c = current.claims;
    // No row (never minted here): its own issue time, the latest the lineage could have begun.
    const startedMs = (await this.store.lineageIssuedAtMs(c.jti)) ?? c.stk.issued_at_ms;
    const maxSeconds = Math.floor(this.kit.config.passportMaxLifetimeMs / 1000);
    const end = Math.floor(startedMs / 1000) + maxSeconds;
    if (end - Math.floor(nowMs / 1000) < 1) {
      await this.recordDenied(c, 'passport.refresh', 'PASSPORT_EXPIRED');
      throw new StackError(
        'PASSPORT_EXPIRED',
        `this passport's refresh lineage has reached its maximum lifetime of ${maxSeconds} s since its first passport was issued: it cannot be refreshed again; issue a new passport`,
        { lineage_issued_at: new Date(startedMs).toISOString(), lineage_expires_at: new Date(end * 1000).toISOString(), max_lifetime_seconds: maxSeconds },
      );
    }
    return end;
  }

  /**
   * A member revocation (auth's) kills what was issued up to its stamp; a revoked member is never
   * reinstated, so what was refreshed or delegated from their passports after the stamp — before
   * the revocation reached the minting node, or stamped on a clock ahead of auth's — must die
   * too: by jti, here, on every replica as the entry arrives. What is minted after this read finds
   * the entry when `mint` looks after its row.
   */
  async revokeMemberPassports(cause: RevocationEntry): Promise<void> {
    if (cause.kind !== 'member') return;
    await this.revokeByJti(cause, await this.store.livePassportsOfMemberAfter(cause.operator_id, cause.value, cause.revoked_at_ms));
  }

  /** The answer of `POST /v1/passports/verify`: never throws for a bad passport, only for a stale node (503). */
  async verify(token: string): Promise<VerifyPassportResult> {
    this.revocations.state.assertFresh();
    let verified: VerifiedPassport;
    try {
      verified = await this.verifier.authenticate(token);
    } catch (err) {
      if (!(err instanceof StackError)) throw err;
      void this.recordQuietly({ layer: 'passport', action: 'passport.verify', outcome: 'denied', error_code: err.code });
      return { valid: false, revoked: false, reason: err.message, code: err.code };
    }
    const hit = this.revocations.state.revocationOf(verified.subject);
    if (hit) {
      void this.recordQuietly({ ...whoOf(verified.claims), layer: 'passport', action: 'passport.verify', outcome: 'denied', error_code: 'PASSPORT_REVOKED' });
      return { valid: false, revoked: true, claims: verified.claims, reason: `the passport has been revoked (${hit.kind})`, code: 'PASSPORT_REVOKED' };
    }
    return { valid: true, revoked: false, claims: verified.claims };
  }

  async listActive(caller: CallerContext, filter: { agent_id?: string; session_id?: string }): Promise<PassportSummary[]> {
    const operatorId = requireOperator(caller, 'stack:passports');
    const rows = await this.store.activePassports(operatorId, filter);
    return rows.filter((r) => !this.revocations.state.revocationOf(subjectOfRow(r))).map(summaryOf);
  }

  async revoke(caller: CallerContext, target: RevokeTarget, reason?: string): Promise<RevocationEntry> {
    const operatorId = requireOperator(caller, target.kind === 'operator' ? 'stack:admin' : 'stack:passports');
    let jtiEntry: RevocationEntry | undefined;
    if (target.kind === 'jti') {
      const row = await this.store.passport(target.value);
      if (!row || row.operator_id !== operatorId) throw notFound('passport');
      // Children never outlive their parent, so the parent's expiry bounds the whole subtree.
      jtiEntry = { id: newId('rev'), kind: 'jti', value: row.jti, operator_id: operatorId, revoked_at_ms: Date.now(), expires_at_ms: new Date(row.expires_at).getTime() + 60_000, ...(reason ? { reason } : {}) };
    } else if (target.kind === 'agent') {
      await this.agentOrNotFound(operatorId, target.value);
    } else if (target.kind === 'session') {
      if (!(await this.store.sessionExists(operatorId, target.value))) throw notFound('session');
    }
    const written = await this.store.transaction(async (m) => {
      // A jti kills by its id whenever minted; a subject by time, stamped in the transaction (revocationTime).
      const entry = target.kind === 'jti' ? jtiEntry! : this.subjectEntry(target.kind, target.kind === 'operator' ? operatorId : target.value, operatorId, await this.store.revocationTime(m, operatorId), reason);
      const entries = [entry, ...this.jtiEntries(entry, await this.livePassportsKilledBy(m, entry))];
      await this.writeRevocations(m, entries);
      await this.kit.audit.enqueue(m, {
        caller,
        layer: 'passport',
        action: `passport.revoke_${target.kind === 'jti' ? 'passport' : target.kind === 'operator' ? 'all' : target.kind}`,
        outcome: 'success',
        ...(target.kind === 'jti' ? { passport_jti: target.value } : target.kind === 'agent' ? { agent_id: target.value } : target.kind === 'session' ? { session_id: target.value } : {}),
      });
      return entries;
    });
    const entry = written[0]!;
    await this.afterRevocation(written);
    await this.revokeLateComers(entry, written);
    return entry;
  }

  // ---- internals ----

  private async mint(
    caller: CallerContext | undefined,
    p: {
      operatorId: string;
      agent: AgentView;
      memberId: string;
      sessionId: string;
      chain: string[];
      nowMs: number;
      exp: number;
      intentSummary: string;
      intentServices: string[];
      services: PassportServiceClaim[];
      action: 'passport.issue' | 'passport.delegate' | 'passport.refresh';
      refreshedFrom?: string;
    },
  ): Promise<IssuedPassport> {
    const key = await this.keys.signingKey();
    const jti = newId('ppt');
    const claims: PassportClaims = {
      jti,
      sub: p.agent.id,
      iss: this.audience,
      aud: this.audience,
      iat: Math.floor(p.nowMs / 1000),
      exp: p.exp,
      stk: {
        operator_id: p.operatorId,
        agent_id: p.agent.id,
        agent_name: p.agent.name,
        member_id: p.memberId,
        session_id: p.sessionId,
        issued_at_ms: p.nowMs,
        chain: p.chain,
        delegation_depth: p.chain.length,
        intent_summary: p.intentSummary,
        intent_services: p.intentServices,
        services: p.services,
      },
    };
    const token = signPassport(claims, key);
    const expiresAt = new Date(p.exp * 1000);
    // The passport and its audit entry: one statement.
    await this.store.insertPassport(
      {
        jti,
        operator_id: p.operatorId,
        agent_id: p.agent.id,
        member_id: p.memberId,
        session_id: p.sessionId,
        parent_jti: p.chain.length ? p.chain[p.chain.length - 1]! : null,
        chain: p.chain,
        delegation_depth: p.chain.length,
        issued_at_ms: p.nowMs,
        expires_at: expiresAt,
        intent_summary: p.intentSummary,
        intent_services: p.intentServices,
        services: p.services,
        kid: key.kid,
        refreshed_from: p.refreshedFrom ?? null,
      },
      [this.kit.audit.row({ ...whoOf(claims), ...(caller?.client_id ? { client_id: caller.client_id } : {}), layer: 'passport', action: p.action, outcome: 'success' })],
    );
    const issued = { token, jti, expires_at: expiresAt.toISOString() };
    // A grant narrowed or removed after this mint read it, and before its row: the change's read
    // missed the row, so looked up now (the change looks again after its commit, so one of the two sees the other).
    if (p.services.length) {
      const grants = await this.store.grants(p.operatorId, p.agent.id);
      if (!p.services.every((s) => coveredBy(s, grants.find((g) => g.connection_id === s.connection_id)))) await this.revokeMinted(p.operatorId, issued, 'minted under a grant since narrowed or removed');
    }
    // Looked up after the row, so a member revocation this node applies later finds the row (revokeMemberPassports).
    // Any issued_at: whatever the stamps, nothing is minted for a revoked member.
    if (this.revocations.state.revocationOf({ member_id: p.memberId, issued_at_ms: Number.NEGATIVE_INFINITY })) await this.revokeMinted(p.operatorId, issued, 'minted for a revoked member');
    return issued;
  }

  /** A passport just minted that a revocation committed meanwhile should have killed: revoked by its jti, and refused. */
  private async revokeMinted(operatorId: string, issued: IssuedPassport, reason: string): Promise<never> {
    await this.revokeByJti({ operator_id: operatorId, revoked_at_ms: Date.now(), reason }, [issued]);
    throw new StackError('PASSPORT_REVOKED', 'the passport has been revoked');
  }

  /** A passport presented to act with (delegate, refresh): valid, fresh node, not revoked — failures audited. */
  private async verifyForUse(token: string, action: string): Promise<VerifiedPassport> {
    try {
      return await this.verifier.verify(token);
    } catch (err) {
      if (err instanceof StackError && err.code !== 'REVOCATION_STATE_STALE') void this.recordQuietly({ layer: 'passport', action, outcome: 'denied', error_code: err.code });
      throw err;
    }
  }

  /**
   * The mint time of a passport made from another (delegate, refresh), stamped before the reads
   * as issue's is, then that other one checked in the database as well: this node learns a
   * revocation from the stream a moment after its commit, and one committed before the mint time
   * is stamped earlier (PassportStore.revocationTime), so it would not kill what is minted from
   * the passport it killed.
   */
  private async mintTimeFrom(from: VerifiedPassport, action: string): Promise<number> {
    const now = await this.store.mintTime(from.claims.stk.operator_id);
    if (await this.store.revoked(from.subject)) {
      await this.recordDenied(from.claims, action, 'PASSPORT_REVOKED');
      throw new StackError('PASSPORT_REVOKED', 'the passport has been revoked');
    }
    return now;
  }

  private async afterRevocation(entries: readonly RevocationEntry[]): Promise<void> {
    // This node refuses at once; the others learn it from the stream. Publishing here rather
    // than waiting for the relay's next round saves up to its interval; the relay still owns
    // delivery (same id: JetStream drops its copy as a duplicate).
    for (const entry of entries) this.revocations.state.apply(entry);
    for (const entry of entries) {
      try {
        await this.kit.bus.publish(RevocationRecordedEvent, entry as never, { id: entry.id });
      } catch (err) {
        this.kit.logger.warn({ revocation_id: entry.id, err: (err as Error).message }, 'direct publish of a revocation failed; the outbox relay will publish it');
      }
    }
  }

  private async writeRevocations(m: EntityManager, entries: readonly RevocationEntry[]): Promise<void> {
    for (const e of entries) {
      await this.store.insertRevocation(m, e);
      await Outbox.enqueue(m, RevocationRecordedEvent, e, { id: e.id });
    }
  }

  /**
   * Live passports a revocation must also kill by jti, because their children carry only jtis
   * (`chain`), never their ancestors' agents or lineage: an agent's passports (issued up to the
   * revocation), or the passports refreshed from a revoked jti.
   */
  private livePassportsKilledBy(on: EntityManager | undefined, entry: RevocationEntry): Promise<LivePassport[]> {
    const runner = on ?? this.kit.dataSource;
    if (entry.kind === 'agent') return this.store.livePassportsOfAgent(runner, entry.operator_id, entry.value, entry.revoked_at_ms);
    if (entry.kind === 'jti') return this.store.liveRefreshesOf(runner, entry.operator_id, entry.value);
    return Promise.resolve([]);
  }

  private jtiEntries(cause: Pick<RevocationEntry, 'operator_id' | 'revoked_at_ms' | 'reason'>, passports: readonly { jti: string; expires_at: Date | string }[]): RevocationEntry[] {
    return passports.map((p) => ({
      id: newId('rev'),
      kind: 'jti',
      value: p.jti,
      operator_id: cause.operator_id,
      revoked_at_ms: cause.revoked_at_ms,
      // Children never outlive their parent, so its expiry bounds the whole subtree.
      expires_at_ms: new Date(p.expires_at).getTime() + 60_000,
      ...(cause.reason ? { reason: cause.reason } : {}),
    }));
  }

  /**
   * Once more after the commit: a passport minted (issue, refresh) while the revocation's
   * transaction was open (for a subject: stamped before it, written after) was not in its read. A refresh looks for its lineage's revocation after
   * writing its row, so one of the two sees the other.
   */
  private async revokeLateComers(cause: RevocationEntry, written: readonly RevocationEntry[]): Promise<void> {
    const done = new Set(written.map((e) => e.value));
    await this.revokeByJti(cause, (await this.livePassportsKilledBy(undefined, cause)).filter((p) => !done.has(p.jti)));
  }

  /** Revokes these passports by jti, as `cause` says: stored with their outbox rows, applied here and published. */
  private async revokeByJti(cause: Pick<RevocationEntry, 'operator_id' | 'revoked_at_ms' | 'reason'>, passports: readonly { jti: string; expires_at: Date | string }[]): Promise<void> {
    if (!passports.length) return;
    const entries = this.jtiEntries(cause, passports);
    await this.store.transaction((m) => this.writeRevocations(m, entries));
    await this.afterRevocation(entries);
  }

  private subjectEntry(kind: Exclude<RevocationKind, 'jti'>, value: string, operatorId: string, revokedAtMs: number, reason?: string): RevocationEntry {
    return { id: newId('rev'), kind, value, operator_id: operatorId, revoked_at_ms: revokedAtMs, expires_at_ms: revokedAtMs + SUBJECT_REVOCATION_LIFETIME_MS, ...(reason ? { reason } : {}) };
  }

  private async agentOrNotFound(operatorId: string, agentId: string): Promise<AgentView> {
    const agent = await this.store.agent(operatorId, agentId);
    if (!agent) throw notFound('agent');
    return agent;
  }

  private async recordDenied(claims: PassportClaims, action: string, code: string): Promise<void> {
    await this.recordQuietly({ ...whoOf(claims), layer: 'passport', action, outcome: 'denied', error_code: code });
  }

  /** Refusals have no state change to ride on: published directly; a lost one is logged, the refusal stands. */
  private async recordQuietly(input: AuditEntryInput): Promise<void> {
    try {
      await this.kit.audit.record(input);
    } catch (err) {
      this.kit.logger.warn({ action: input.action, err: (err as Error).message }, 'audit record of a refusal failed');
    }
  }
}

function whoOf(claims: PassportClaims): Pick<AuditEntryInput, 'operator_id' | 'member_id' | 'agent_id' | 'passport_jti' | 'session_id'> {
  return { operator_id: claims.stk.operator_id, member_id: claims.stk.member_id, agent_id: claims.stk.agent_id, passport_jti: claims.jti, session_id: claims.stk.session_id };
}

/**
 * The caller's operator, or a refusal. A caller with no scopes listed (an API key, a service
 * acting for an operator) is limited by its member's role elsewhere; a caller that lists scopes
 * (an OAuth token) must hold the one the action needs.
 */
export function requireOperator(caller: CallerContext, scope: 'stack:passports' | 'stack:admin'): string {
  if (!caller.operator_id) throw new StackError('UNAUTHORIZED', 'this needs an authenticated caller of an operator');
  // No scopes is no rights, never every right: a token whose grant ended up empty must not pass as unrestricted.
  if (caller.kind !== 'system' && !caller.scopes.includes(scope)) throw new StackError('FORBIDDEN', `this needs the ${scope} scope`, { scope });
  return caller.operator_id;
}

/** Whether the caller may act on the connection: absent `allowed_connections` means no limit. */
function mayUseConnection(caller: CallerContext | undefined, connectionId: string): boolean {
  return !caller?.allowed_connections || caller.allowed_connections.includes(connectionId);
}

/** A caller limited to some connections grants, removes grants, issues, delegates and refreshes only those: FORBIDDEN, as the proxy refuses acting on the others. */
function requireAllowedConnection(caller: CallerContext | undefined, connectionId: string): void {
  if (!mayUseConnection(caller, connectionId)) throw new StackError('FORBIDDEN', `connection ${connectionId} is not among the caller's allowed connections`, { connection_id: connectionId });
}

function checkAgentName(name: string): void {
  if (name.length > AGENT_NAME_MAX || !NAME_RE.test(name)) throw new StackError('INVALID_REQUEST', `agent names are lowercase letters, digits and inner hyphens, at most ${AGENT_NAME_MAX} characters`, { field: 'name' });
}

function checkIntent(summary: string | undefined): void {
  if (summary !== undefined && summary.length > MAX_INTENT_SUMMARY) throw new StackError('INVALID_REQUEST', `intent_summary is at most ${MAX_INTENT_SUMMARY} characters`, { field: 'intent_summary' });
}

/** One entry per connection: the proxy reads only the first entry of a connection, so a second would be a dead letter. */
function checkServiceList(services: readonly RequestedService[]): void {
  const seen = new Set<string>();
  for (const s of services) {
    if (seen.has(s.connection_id)) throw new StackError('INVALID_REQUEST', `connection ${s.connection_id} is listed more than once in services`, { field: 'services', connection_id: s.connection_id });
    seen.add(s.connection_id);
  }
}

/** A child's TTL (delegate, refresh of a child): whole seconds, at least 1, no longer than its parent has left. */
function childTtl(requested: number | undefined, remaining: number): number {
  if (requested === undefined && remaining < 1) throw new StackError('PASSPORT_EXPIRED', 'the parent passport has expired');
  const ttl = requested ?? remaining;
  if (!Number.isInteger(ttl) || ttl < 1) throw new StackError('INVALID_REQUEST', 'ttl_seconds must be a whole number of at least 1', { field: 'ttl_seconds' });
  if (ttl > remaining) throw new StackError('INVALID_REQUEST', `a child passport cannot outlive its parent: at most ${Math.max(0, remaining)} s are left`, { field: 'ttl_seconds', max: Math.max(0, remaining) });
  return ttl;
}

function escalation(message: string, connectionId: string): StackError {
  return new StackError('SCOPE_ESCALATION', message, { connection_id: connectionId });
}

function narrowToGrant(req: RequestedService, grants: readonly GrantView[]): PassportServiceClaim {
  const grant = grants.find((g) => g.connection_id === req.connection_id);
  if (!grant) throw escalation(`the agent has no grant of connection ${req.connection_id}`, req.connection_id);
  const extra = req.scopes.filter((s) => !grant.scopes.includes(s));
  if (extra.length) throw escalation(`the agent was not granted scopes ${extra.join(', ')} on ${req.connection_id}`, req.connection_id);
  return serviceOf(grant, unique(req.scopes), mergeConstraints(req.connection_id, [...grant.constraints, ...(req.constraints ?? [])]));
}

/**
 * Whether a grant covers what a passport holds on its connection: every scope granted, and every
 * constraint of the grant among the passport's (as issue, delegation and refresh put them there).
 * No grant, or a removed one (no scopes), covers nothing.
 */
function coveredBy(s: PassportServiceClaim, grant: Partial<Pick<GrantView, 'scopes' | 'constraints'>> | undefined): boolean {
  if (!grant?.scopes) return false;
  const granted = grant.scopes;
  if (!s.scopes.every((x) => granted.includes(x))) return false;
  const held = new Set(s.constraints.map(constraintKey));
  return (grant.constraints ?? []).every((c) => held.has(constraintKey(c)));
}

function constraintKey(c: Constraint): string {
  return JSON.stringify([c.path, c.op, c.value]);
}

function serviceOf(g: GrantView, scopes: string[], constraints: Constraint[]): PassportServiceClaim {
  return { connection_id: g.connection_id, service_id: g.service_id, service_name: g.service_name, scopes, constraints };
}

/** Union without duplicates, each constraint checked; at most 32 per connection. */
export function mergeConstraints(connectionId: string, constraints: readonly Constraint[]): Constraint[] {
  const seen = new Set<string>();
  const out: Constraint[] = [];
  for (const c of constraints) {
    checkConstraint(c);
    const key = constraintKey(c);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: c.path, op: c.op, value: c.value });
  }
  if (out.length > MAX_CONSTRAINTS_PER_CONNECTION) throw new StackError('INVALID_REQUEST', `at most ${MAX_CONSTRAINTS_PER_CONNECTION} constraints per connection`, { connection_id: connectionId });
  return out;
}

function checkConstraint(c: Constraint): void {
  if (!(CONSTRAINT_OPS as readonly string[]).includes(c.op)) throw new StackError('INVALID_REQUEST', `unknown constraint op ${String(c.op)}`);
  const isList = c.op === 'in' || c.op === 'not_in';
  if (isList !== Array.isArray(c.value)) throw new StackError('INVALID_REQUEST', `constraint op ${c.op} takes ${isList ? 'a list of strings' : 'a string'}`, { path: c.path });
  if (c.op === 'matches' && (c.value as string).length > MAX_CONSTRAINT_PATTERN) throw new StackError('INVALID_REQUEST', `a matches pattern is at most ${MAX_CONSTRAINT_PATTERN} characters`, { path: c.path });
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

function notFound(what: string): StackError {
  return new StackError('NOT_FOUND', `${what} not found`);
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string; driverError?: { code?: string } })?.code === '23505' || (err as { driverError?: { code?: string } })?.driverError?.code === '23505';
}

function subjectOfRow(r: PassportRow) {
  return { jti: r.jti, chain: r.chain, operator_id: r.operator_id, agent_id: r.agent_id, session_id: r.session_id, member_id: r.member_id, issued_at_ms: Number(r.issued_at_ms) };
}

function summaryOf(r: PassportRow): PassportSummary {
  return {
    jti: r.jti,
    agent_id: r.agent_id,
    member_id: r.member_id,
    session_id: r.session_id,
    parent_jti: r.parent_jti,
    delegation_depth: r.delegation_depth,
    issued_at: new Date(Number(r.issued_at_ms)).toISOString(),
    expires_at: new Date(r.expires_at).toISOString(),
    intent_summary: r.intent_summary,
    connection_ids: r.services.map((s) => s.connection_id),
  };
}

