/**
 * Drop-offs (issue 9): `created → deposited → collected`, or `→ expired`; one way, no reuse.
 *
 * Custody: each payload is sealed with its own data key (the vault's EnvelopeCipher, operator
 * and drop-off id bound as additional data, the key wrapped by the master keyring) and opened
 * only in memory at collection, then destroyed by the one guarded UPDATE that marks it collected
 * (status `deposited` → `collected`, ciphertext NULL) — so exactly one collector ever gets it, and
 * a payload that cannot be opened is never destroyed. Expiry purges the ciphertext (a sweeper, and a check at
 * every read). Who may touch it: only the creator's operator (another operator's drop-off is
 * NOT_FOUND); only its creator deposits; only a named recipient agent — by its passport or as the
 * OAuth client it is — collects (its credential checked again after a wait). Every step is audited (each state change, its audit entry and its
 * event written by one statement through the outbox; refusals recorded before answering); the payload never reaches a log line,
 * an audit entry or an event.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';

import {
  DROPOFF_ID_PATTERN,
  DROPOFF_LIMITS,
  DropoffCollectedEvent,
  DropoffDepositedEvent,
  DropoffExpiredEvent,
  StackError,
  type CallerContext,
  type CollectInput,
  type CollectResult,
  type CreateDropoffInput,
  type DepositInput,
  type DropoffView,
  type PayloadOf,
} from '@stack/contracts';
import { Outbox } from '@stack/persistence';
import { RevocationHost, serviceKitToken, type AuditEntryInput, type ServiceKit } from '@stack/runtime';
import { EnvelopeCipher, Keyring } from '@stack/security';

import { newId } from '../passports/passport.service';
import { PassportStore } from '../store/passport.store';
import { DropoffSchemas } from './dropoff-schema';
import { DropoffStore, type DropoffRow } from './dropoff.store';

const SWEEP_BATCH = 500;
const DROPOFF_ID = new RegExp(DROPOFF_ID_PATTERN);
/** How often a waiter re-reads the row (a deposit on another replica wakes no one here). */
const WAIT_POLL_MS = 200;

/** Who is acting, as drop-offs see it. */
interface Actor {
  caller: CallerContext;
  operatorId: string;
  /** The agent acting: the passport's, or the agent an OAuth client is. */
  agentId?: string;
  /** Equal for the creator and only the creator. */
  creatorKey: string;
  /** When the request came in with its credential checked. */
  since: number;
}

export function dropoffView(r: DropoffRow): DropoffView {
  return {
    id: r.id,
    status: r.status,
    to_agents: r.to_agents,
    schema: JSON.parse(r.schema_json) as unknown,
    created_by: { ...(r.created_by_member ? { member_id: r.created_by_member } : {}), ...(r.created_by_agent ? { agent_id: r.created_by_agent } : {}) },
    created_at: new Date(r.created_at).toISOString(),
    expires_at: new Date(r.expires_at).toISOString(),
    ...(r.deposited_at ? { deposited_at: new Date(r.deposited_at).toISOString() } : {}),
    ...(r.collected_at ? { collected_at: new Date(r.collected_at).toISOString() } : {}),
    ...(r.collected_by ? { collected_by: r.collected_by } : {}),
    ...(r.payload_bytes !== null ? { payload_bytes: r.payload_bytes } : {}),
  };
}

type EventSource = Pick<DropoffRow, 'id' | 'operator_id' | 'to_agents' | 'created_by_member' | 'created_by_agent' | 'expires_at' | 'payload_bytes'> & { collected_by?: string | null };

function eventOf(r: EventSource): PayloadOf<typeof DropoffDepositedEvent> {
  return {
    dropoff_id: r.id,
    operator_id: r.operator_id,
    to_agents: r.to_agents,
    ...(r.created_by_member ? { created_by_member: r.created_by_member } : {}),
    ...(r.created_by_agent ? { created_by_agent: r.created_by_agent } : {}),
    occurred_at: new Date().toISOString(),
    expires_at: new Date(r.expires_at).toISOString(),
    ...(r.payload_bytes !== null ? { payload_bytes: r.payload_bytes } : {}),
    ...(r.collected_by ? { collected_by: r.collected_by } : {}),
  };
}

function payloadJson(payload: unknown): string {
  const json = JSON.stringify(payload);
  if (json === undefined) throw new StackError('INVALID_REQUEST', 'payload must be a JSON value');
  const bytes = Buffer.byteLength(json);
  if (bytes > DROPOFF_LIMITS.payloadBytes) throw new StackError('PAYLOAD_TOO_LARGE', `the payload is ${bytes} bytes; at most ${DROPOFF_LIMITS.payloadBytes} are accepted`, { limit_bytes: DROPOFF_LIMITS.payloadBytes });
  return json;
}

const recentKey = (operatorId: string, id: string) => `${operatorId}\u0000${id}`;

/**
 * Drop-off rows this instance wrote and may use again without reading them back: the oldest go
 * first when there are too many or they weigh too much (in characters held), and a row heavier
 * than `maxOne` is not kept at all. Expired rows leave at the sweeper's pace, and are never used.
 */
class RecentRows {
  private readonly rows = new Map<string, { row: DropoffRow; weight: number }>();
  private weight = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxWeight: number,
    private readonly maxOne: number,
  ) {}

  /** The row, unless it has expired as far as this instance knows (then it is forgotten). */
  get(key: string): DropoffRow | undefined {
    const kept = this.rows.get(key);
    if (!kept) return undefined;
    if (new Date(kept.row.expires_at).getTime() > Date.now()) return kept.row;
    this.delete(key);
    return undefined;
  }

  set(key: string, row: DropoffRow, weight: number): void {
    this.delete(key);
    if (weight > this.maxOne) return;
    for (const oldest of this.rows.keys()) {
      if (this.rows.size < this.maxEntries && this.weight + weight <= this.maxWeight) break;
      this.delete(oldest);
    }
    this.rows.set(key, { row, weight });
    this.weight += weight;
  }

  delete(key: string): void {
    const kept = this.rows.get(key);
    if (!kept) return;
    this.rows.delete(key);
    this.weight -= kept.weight;
  }

  forgetExpired(now: number): void {
    for (const [key, { row }] of this.rows) if (new Date(row.expires_at).getTime() <= now) this.delete(key);
  }
}

const weightOf = (row: DropoffRow): number => row.schema_json.length + (row.ciphertext ? row.ciphertext.ct.length + row.ciphertext.dk.length : 0);

@Injectable()
export class DropoffService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly cipher: EnvelopeCipher;
  readonly schemas = new DropoffSchemas();
  private readonly waiters = new Map<string, Set<() => void>>();
  /**
   * Drop-offs this instance created and that still wait for their payload: what a deposit needs
   * of them (schema, creator, recipients, expiry) never changes after creation, so the creator's
   * deposit needs no read first; the guarded UPDATE still decides whether it is open. Small
   * schemas only (the common case): a 64 KB schema per entry would make this the largest thing in memory.
   */
  private readonly awaitingDeposit = new RecentRows(10_000, 8 << 20, 4096);
  /**
   * Drop-offs this instance sealed a payload into: a deposit happens once, so the sealed payload
   * and who may collect it never change, and the collector's request needs no read first. The
   * payload is opened before the guarded UPDATE (exactly one collector, the ciphertext destroyed
   * by the same statement) decides; a sealed copy that no longer opens (its key retired by a
   * rotation) or an UPDATE that matches nothing falls back to reading the row. Holds ciphertexts
   * only, never a plaintext; payloads over 64 KB are not kept.
   */
  private readonly depositedHere = new RecentRows(10_000, 32 << 20, 96 * 1024);
  private sweeper?: NodeJS.Timeout;
  private sweeping?: Promise<number>;

  constructor(
    @Inject(serviceKitToken('passport')) private readonly kit: ServiceKit,
    private readonly store: DropoffStore,
    private readonly agents: PassportStore,
    private readonly revocations: RevocationHost,
  ) {
    if (!kit.config.masterKeys) throw new Error('passport: STACK_MASTER_KEYS is not set (the runtime generates one for local use)');
    this.cipher = new EnvelopeCipher(Keyring.parse(kit.config.masterKeys));
  }

  onApplicationBootstrap(): void {
    this.sweeper = setInterval(() => void this.sweep().catch((err: unknown) => this.kit.logger.warn({ err: (err as Error).message }, 'drop-off sweep failed; the next one retries')), this.kit.config.dropoffSweepMs);
    this.sweeper.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.sweeper);
    await this.sweeping?.catch(() => undefined);
    for (const set of this.waiters.values()) for (const wake of set) wake();
  }

  async create(caller: CallerContext, input: CreateDropoffInput): Promise<DropoffView> {
    const actor = await this.actor(caller);
    return this.refusalsAudited(actor, 'dropoff.create', undefined, async () => {
      if ((input.to_agent === undefined) === (input.to_agents === undefined)) throw new StackError('INVALID_REQUEST', 'name the recipient with to_agent, or several with to_agents (the first to collect wins)', { field: 'to_agent' });
      const refs = [...new Set(input.to_agents ?? [input.to_agent!])];
      const found = await this.agents.resolveAgents(actor.operatorId, refs);
      const missing = refs.filter((r) => !found.has(r));
      if (missing.length) throw new StackError('NOT_FOUND', `no agent ${missing.map((m) => `'${m}'`).join(', ')} in your team`, { agents: missing });
      const toAgents = [...new Set(refs.map((r) => found.get(r)!))];
      const schema = this.schemas.prepare(input.schema);
      const ttl = input.ttl_seconds ?? DROPOFF_LIMITS.defaultTtlSeconds;
      if (!Number.isInteger(ttl) || ttl < DROPOFF_LIMITS.minTtlSeconds || ttl > DROPOFF_LIMITS.maxTtlSeconds) {
        throw new StackError('INVALID_REQUEST', `ttl_seconds is between ${DROPOFF_LIMITS.minTtlSeconds} and ${DROPOFF_LIMITS.maxTtlSeconds}`, { field: 'ttl_seconds' });
      }
      const id = newId('drp');
      let sealed: { ciphertext: DropoffRow['ciphertext']; bytes: number | null } = { ciphertext: null, bytes: null };
      if (input.payload !== undefined) {
        const json = payloadJson(input.payload);
        this.assertMatches(schema.validate, input.payload);
        sealed = { ciphertext: await this.cipher.seal({ operatorId: actor.operatorId, recordId: id }, json), bytes: Buffer.byteLength(json) };
      }
      const values = {
        id,
        operator_id: actor.operatorId,
        status: sealed.ciphertext ? ('deposited' as const) : ('created' as const),
        to_agents: toAgents,
        schema_json: schema.json,
        schema_hash: schema.hash,
        created_by_member: caller.member_id ?? null,
        created_by_agent: actor.agentId ?? null,
        created_by_client: caller.client_id ?? null,
        creator_key: actor.creatorKey,
        ciphertext: sealed.ciphertext,
        payload_bytes: sealed.bytes,
        expires_at: new Date(Date.now() + ttl * 1000),
      };
      // The row, its audit entry and (with a payload) its `deposited` event: one statement.
      const events = [this.kit.audit.row(this.entry(actor, 'dropoff.create', 'success', id))];
      if (values.status === 'deposited') events.push(Outbox.row(DropoffDepositedEvent, eventOf(values), { id: `${id}:deposited` }));
      const row = await this.store.insert(values, events);
      (row.status === 'created' ? this.awaitingDeposit : this.depositedHere).set(recentKey(row.operator_id, row.id), row, weightOf(row));
      return dropoffView(row);
    });
  }

  async deposit(caller: CallerContext, input: DepositInput): Promise<DropoffView> {
    const actor = await this.actor(caller);
    return this.refusalsAudited(actor, 'dropoff.deposit', input.dropoff_id, async () => {
      const key = recentKey(actor.operatorId, input.dropoff_id);
      // Unexpired as far as this instance knows; otherwise the read (which also purges an expired one).
      const row = this.awaitingDeposit.get(key) ?? (await this.visible(actor, input.dropoff_id));
      if (row.creator_key !== actor.creatorKey) throw new StackError('FORBIDDEN', 'only the creator of a drop-off deposits its payload', { dropoff_id: row.id });
      this.assertOpenFor(row, 'deposit');
      const json = payloadJson(input.payload);
      this.assertMatches(this.schemas.validatorFor(row.schema_json, row.schema_hash), input.payload);
      const ciphertext = await this.cipher.seal({ operatorId: actor.operatorId, recordId: row.id }, json);
      const bytes = Buffer.byteLength(json);
      const done = await this.store.deposit(actor.operatorId, row.id, ciphertext, bytes, [
        this.kit.audit.row(this.entry(actor, 'dropoff.deposit', 'success', row.id)),
        Outbox.row(DropoffDepositedEvent, eventOf({ ...row, payload_bytes: bytes }), { id: `${row.id}:deposited` }),
      ]);
      this.awaitingDeposit.delete(key);
      if (!done) {
        // Someone else changed it between the read and the write: say what it is now.
        this.assertOpenFor(await this.visible(actor, row.id), 'deposit');
        throw new StackError('DROPOFF_EXPIRED', 'the drop-off expired before the deposit', { dropoff_id: row.id });
      }
      this.depositedHere.set(key, done, weightOf(done));
      this.wake(row.id);
      return dropoffView(done);
    });
  }

  async collect(caller: CallerContext, input: CollectInput): Promise<CollectResult> {
    const actor = await this.actor(caller);
    return this.refusalsAudited(actor, 'dropoff.collect', input.dropoff_id, async () => {
      // Sealed here and addressed to this agent: no read. Taken out at once, so concurrent collectors read the row.
      const key = recentKey(actor.operatorId, input.dropoff_id);
      let sealedHere = this.depositedHere.get(key);
      if (sealedHere && actor.agentId && sealedHere.to_agents.includes(actor.agentId)) this.depositedHere.delete(key);
      else sealedHere = undefined;
      let row = sealedHere ?? (await this.visible(actor, input.dropoff_id));
      if (!actor.agentId) throw new StackError('FORBIDDEN', 'drop-offs are collected by agents: present the agent’s passport, or call as the OAuth client that agent is', { dropoff_id: row.id });
      if (!row.to_agents.includes(actor.agentId)) throw new StackError('FORBIDDEN', 'this drop-off is not addressed to you', { dropoff_id: row.id });
      if (row.status === 'created' && input.wait_seconds) {
        row = await this.waitWhileCreated(actor, row, input.wait_seconds);
        // The credential was checked before the wait, which it may not have outlived.
        await this.assertCallerLive(actor);
      }
      if (row.status !== 'deposited' || new Date(row.expires_at).getTime() <= Date.now()) {
        this.assertOpenFor(row, 'collect');
        throw new StackError('DROPOFF_NOT_DEPOSITED', 'nothing has been deposited yet: wait (wait_seconds) and collect again', { dropoff_id: row.id });
      }
      // Opened first, destroyed second: a payload that cannot be opened (a retired key) stays
      // where it is. The guarded UPDATE lets exactly one collector through; it destroys the
      // ciphertext and writes the audit entry and the `collected` event in one statement.
      const binding = { operatorId: actor.operatorId, recordId: row.id };
      let plaintext: string;
      try {
        plaintext = await this.cipher.open(binding, row.ciphertext!);
      } catch (err) {
        if (!sealedHere) throw err;
        // The copy sealed here no longer opens (a rotation re-wrapped the row and retired the key): read the row.
        row = await this.visible(actor, row.id);
        this.assertOpenFor(row, 'collect');
        plaintext = await this.cipher.open(binding, row.ciphertext!);
      }
      const collected = await this.store.markCollected(actor.operatorId, row.id, actor.agentId, [
        this.kit.audit.row(this.entry(actor, 'dropoff.collect', 'success', row.id)),
        Outbox.row(DropoffCollectedEvent, eventOf({ ...row, collected_by: actor.agentId }), { id: `${row.id}:collected` }),
      ]);
      if (!collected) {
        // Another collector (or the sweeper) got there first, or it expired: say what it is now (an expired one is purged on the way).
        this.assertOpenFor(await this.visible(actor, row.id), 'collect');
        throw new StackError('DROPOFF_EXPIRED', 'the drop-off expired before it was collected', { dropoff_id: row.id });
      }
      this.wake(row.id);
      return { dropoff_id: collected.id, payload: JSON.parse(plaintext) as unknown, collected_at: new Date(collected.collected_at!).toISOString(), collected_by: collected.collected_by!, created_by: dropoffView(collected).created_by };
    });
  }

  /** A drop-off's state, never its payload; with `waitSeconds`, answers once it is no longer waiting for its deposit. */
  async get(caller: CallerContext, id: string, waitSeconds = 0): Promise<DropoffView> {
    const actor = await this.actor(caller);
    let row = await this.visible(actor, id);
    const admin = caller.scopes.includes('stack:admin');
    if (!admin && row.creator_key !== actor.creatorKey && !(actor.agentId && row.to_agents.includes(actor.agentId))) {
      throw new StackError('FORBIDDEN', 'only its creator, its recipients and admins read a drop-off', { dropoff_id: id });
    }
    if (row.status === 'created' && waitSeconds > 0) {
      row = await this.waitWhileCreated(actor, row, waitSeconds);
      await this.assertCallerLive(actor);
    }
    return dropoffView(row);
  }

  /** Expires every open drop-off past its TTL (ciphertext purged), in batches; returns how many. */
  sweep(): Promise<number> {
    this.sweeping ??= (async () => {
      const now = Date.now();
      this.awaitingDeposit.forgetExpired(now);
      this.depositedHere.forgetExpired(now);
      let total = 0;
      try {
        for (;;) {
          const n = await this.expireBatch();
          total += n;
          if (n < SWEEP_BATCH) return total;
        }
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }

  private async expireBatch(operatorId?: string, id?: string): Promise<number> {
    const expired = await this.store.transaction(async (m) => {
      const rows = await this.store.expireDue(m, SWEEP_BATCH, operatorId, id);
      for (const r of rows) {
        await this.kit.audit.enqueue(m, { layer: 'dropoff', action: 'dropoff.expire', outcome: 'success', operator_id: r.operator_id, target: { service: 'dropoff', path: `/v1/dropoffs/${r.id}` } });
        await Outbox.enqueue(m, DropoffExpiredEvent, eventOf(r), { id: `${r.id}:expired` });
      }
      return rows;
    });
    for (const r of expired) this.wake(r.id);
    return expired.length;
  }

  private async actor(caller: CallerContext): Promise<Actor> {
    if (!caller.operator_id || caller.kind === 'system') throw new StackError('UNAUTHORIZED', 'drop-offs need an authenticated member or agent of a team');
    // No scopes is no rights, never every right.
    if (!caller.scopes.includes('stack:dropoffs') && !caller.scopes.includes('stack:admin')) {
      throw new StackError('FORBIDDEN', 'this needs the stack:dropoffs scope', { required_scopes: ['stack:dropoffs'] });
    }
    const operatorId = caller.operator_id;
    const since = Date.now();
    if (caller.agent_id) return { caller, operatorId, agentId: caller.agent_id, creatorKey: `agent:${caller.agent_id}`, since };
    if (caller.client_id) {
      const agentId = await this.agents.agentOfClient(operatorId, caller.client_id);
      return { caller, operatorId, agentId, creatorKey: `client:${caller.client_id}:${caller.member_id ?? ''}`, since };
    }
    return { caller, operatorId, creatorKey: `member:${caller.member_id ?? ''}`, since };
  }

  /** The operator's drop-off; an expired one is purged on the spot (whatever the sweeper's pace). */
  private async visible(actor: Actor, id: string): Promise<DropoffRow> {
    const row = typeof id === 'string' && DROPOFF_ID.test(id) ? await this.store.find(actor.operatorId, id) : undefined;
    if (!row) throw new StackError('NOT_FOUND', `no drop-off '${String(id).slice(0, 80)}'`);
    if ((row.status === 'created' || row.status === 'deposited') && new Date(row.expires_at).getTime() <= Date.now()) {
      await this.expireBatch(actor.operatorId, id);
      return (await this.store.find(actor.operatorId, id)) ?? row;
    }
    return row;
  }

  /**
   * The caller's credential checked again against this node's revocation state (a stale node
   * refuses): a passport by its row (chain, expiry, issue time); another credential by its member
   * and client, revoked since the request came in. Not the operator for those: "revoke all
   * passports" signs no member out.
   */
  private async assertCallerLive(actor: Actor): Promise<void> {
    const c = actor.caller;
    const state = this.revocations.state;
    if (c.passport_jti) {
      const p = await this.agents.passport(c.passport_jti);
      if (!p || p.operator_id !== actor.operatorId) throw new StackError('UNAUTHORIZED', 'the passport is not known');
      if (new Date(p.expires_at).getTime() <= Date.now()) throw new StackError('PASSPORT_EXPIRED', 'the passport expired while waiting');
      state.check({ jti: p.jti, chain: p.chain, operator_id: p.operator_id, agent_id: p.agent_id, session_id: p.session_id, member_id: p.member_id, issued_at_ms: Number(p.issued_at_ms) });
      return;
    }
    state.check({ member_id: c.member_id, client_id: c.client_id, issued_at_ms: actor.since });
  }

  private assertOpenFor(row: DropoffRow, action: 'deposit' | 'collect'): void {
    if (row.status === 'expired' || new Date(row.expires_at).getTime() <= Date.now()) throw new StackError('DROPOFF_EXPIRED', 'the drop-off expired; its payload, if any, was destroyed', { dropoff_id: row.id, expired_at: new Date(row.expires_at).toISOString() });
    if (row.status === 'collected') {
      throw new StackError('DROPOFF_ALREADY_COLLECTED', `the drop-off was already collected by ${row.collected_by}`, { dropoff_id: row.id, collected_by: row.collected_by, collected_at: row.collected_at ? new Date(row.collected_at).toISOString() : undefined });
    }
    if (action === 'deposit' && row.status === 'deposited') throw new StackError('DROPOFF_ALREADY_DEPOSITED', 'the payload was already deposited; a drop-off is used once', { dropoff_id: row.id });
  }

  private assertMatches(validate: Parameters<DropoffSchemas['check']>[0], payload: unknown): void {
    const errors = this.schemas.check(validate, payload);
    if (errors.length) throw new StackError('SCHEMA_VALIDATION_FAILED', `the payload does not match the drop-off's schema (${errors.length} problem${errors.length > 1 ? 's' : ''})`, { errors });
  }

  private async waitWhileCreated(actor: Actor, row: DropoffRow, seconds: number): Promise<DropoffRow> {
    const deadline = Date.now() + Math.min(seconds, DROPOFF_LIMITS.maxWaitSeconds) * 1000;
    let current = row;
    while (current.status === 'created' && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const set = this.waiters.get(row.id) ?? new Set<() => void>();
        this.waiters.set(row.id, set);
        const done = () => {
          clearTimeout(timer);
          set.delete(done);
          if (set.size === 0 && this.waiters.get(row.id) === set) this.waiters.delete(row.id);
          resolve();
        };
        const timer = setTimeout(done, Math.max(1, Math.min(WAIT_POLL_MS, deadline - Date.now())));
        set.add(done);
      });
      current = await this.visible(actor, row.id);
    }
    return current;
  }

  private wake(id: string): void {
    const set = this.waiters.get(id);
    if (set) for (const wake of [...set]) wake();
  }

  private entry(actor: Actor, action: string, outcome: AuditEntryInput['outcome'], id: string | undefined, errorCode?: string): AuditEntryInput {
    return {
      caller: actor.caller,
      ...(actor.agentId ? { agent_id: actor.agentId } : {}),
      layer: 'dropoff',
      action,
      outcome,
      target: { service: 'dropoff', ...(id ? { path: `/v1/dropoffs/${id}` } : {}) },
      ...(errorCode ? { error_code: errorCode } : {}),
    };
  }

  /** Runs a step; a refusal is recorded (durably) before it is answered. */
  private async refusalsAudited<T>(actor: Actor, action: string, id: string | undefined, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (err) {
      const code = err instanceof StackError ? err.code : 'INTERNAL_ERROR';
      if (code !== 'AUDIT_UNAVAILABLE') {
        const safeId = id && DROPOFF_ID.test(id) ? id : undefined;
        await this.kit.audit.record(this.entry(actor, action, code === 'INTERNAL_ERROR' ? 'failure' : 'denied', safeId, code)).catch((auditErr: unknown) => {
          this.kit.logger.warn({ action, dropoff_id: safeId, error_code: code, err: (auditErr as Error).message }, 'audit record of a refusal failed');
        });
      }
      throw err;
    }
  }
}
