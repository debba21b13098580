/**
 * The proxy pipeline of DESIGN.md §5, in its order: the caller's authority (a member through
 * their own context — within its allowed connections when it has such a list — or a passport), the connection, the canonical request, scope rules, every
 * constraint, allowed hosts, the network guard (DNS once, private addresses refused), the audit
 * record, idempotency, the credential (refreshed when due) injected after the caller's auth
 * headers were dropped, the upstream call (timeout, no redirects, capped answer, abortable by a
 * revocation) and a scrubbed answer. Refusals are audited too. No error or answer carries the
 * credential.
 */
import { performance } from 'node:perf_hooks';

import { StackError, type CallerContext, type PassportClaims, type PassportService, type ProxyRequest, type ProxyResponse } from '@stack/contracts';
import type { StackLogger } from '@stack/observability';
import type { AuditEntryInput } from '@stack/runtime';
import type { AbortLike, CredentialSubject, ResolvedAddress } from '@stack/security';

import type { Catalog } from '../catalog/catalog';
import { connectionHosts, enforceAllowedHost } from '../catalog/catalog';
import type { CatalogEntry } from '../catalog/catalog.types';
import { enforceScopes, requiredScopes } from '../catalog/scope-rules';
import type { InFlightTracker, PassportAuthority } from '../caller/caller-seams';
import type { ConnectionDirectory } from '../connections/connection-directory';
import type { ConnectionRow } from '../connections/connection.repository';
import type { UpstreamOAuthManager } from '../oauth/upstream-oauth';
import { secretStrings } from '../vault/credential-vault';
import { canonicalise, requestTarget, type CanonicalRequest } from './canonical-request';
import { enforceConstraints } from './constraints';
import { inject, scrub, trimSecretPrefixTail } from './credential-injection';
import { fingerprintOf, type IdempotencyStore } from './idempotency-store';
import type { NetworkGuard } from './network-guard';
import type { UpstreamClient } from './upstream-client';

/** Where an answer goes: REST refuses past 10 MB, the bus/tool result truncates. */
export interface Channel {
  name: 'rest' | 'bus';
  maxBytes: number;
  overflow: 'refuse' | 'truncate';
}

/** The audit seam: the runtime's `kit.audit` (issue 7) fits it. */
export interface AuditSink {
  record(input: AuditEntryInput): Promise<string>;
}

export interface ProxyPipelineDeps {
  /** Connection and custom-service reads of the hot path: one directory read per call. */
  connections: Pick<ConnectionDirectory, 'rows'>;
  catalog: Catalog;
  guard: NetworkGuard;
  upstream: UpstreamClient;
  oauth: UpstreamOAuthManager;
  idempotency: IdempotencyStore;
  passports: PassportAuthority;
  inFlight: InFlightTracker;
  audit: AuditSink;
  logger: StackLogger;
  timeoutMs: number;
}

interface Authority {
  caller: CallerContext;
  operatorId: string;
  claims?: PassportClaims;
  subject: CredentialSubject;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization', 'set-cookie', 'set-cookie2', 'content-length', 'content-encoding']);
const TEXTUAL = /^(text\/|application\/([\w.+-]*\+)?(json|xml|javascript|x-www-form-urlencoded|graphql)\b)/i;

export function isConnectionId(value: string): boolean {
  return value.startsWith('scon_');
}

export class ProxyPipeline {
  constructor(private readonly d: ProxyPipelineDeps) {}

  /** Who may act, and as what: the member themselves, or the passport they present. */
  async authority(caller: CallerContext, passportToken: string | undefined): Promise<Authority> {
    if (caller.kind === 'system' || !caller.operator_id) throw new StackError('UNAUTHORIZED', 'the proxy acts only for a member or an agent of an operator');
    if (passportToken) {
      const { claims, subject } = await this.d.passports.verify(passportToken);
      if (claims.stk.operator_id !== caller.operator_id) throw new StackError('UNAUTHORIZED', 'the passport belongs to another operator');
      return { caller, operatorId: caller.operator_id, claims, subject };
    }
    if (caller.kind === 'agent' || caller.passport_jti) throw new StackError('UNAUTHORIZED', 'an agent calls the proxy with its passport (passport_token)');
    if (!caller.scopes.includes('stack:services') && !caller.scopes.includes('stack:admin')) {
      throw new StackError('FORBIDDEN', 'the caller was not granted the stack:services scope', { required_scopes: ['stack:services'] });
    }
    // What a revocation of this member's own credentials names: the member, or the app (OAuth
    // client) they call through. Not the operator: "revoke all passports" ends agents' passports,
    // not members' own calls (as the token checks leave the operator out).
    const subject: CredentialSubject = { member_id: caller.member_id, issued_at_ms: 0 };
    if (caller.client_id) subject.client_id = caller.client_id;
    return { caller, operatorId: caller.operator_id, subject };
  }

  /** The connection named by `service` (a connection id, or a catalog id with exactly one usable connection) among the operator's. */
  choose(auth: Authority, service: string, connections: readonly ConnectionRow[]): { conn: ConnectionRow; grant?: PassportService } {
    const granted = auth.claims?.stk.services;
    // The caller's own limit (a member's allowed connections), whatever passport it presents.
    const allowed = auth.caller.allowed_connections;
    if (isConnectionId(service)) {
      const conn = connections.find((c) => c.id === service);
      if (!conn) throw new StackError('NOT_FOUND', `no connection '${service}'`);
      if (allowed && !allowed.includes(conn.id)) throw new StackError('FORBIDDEN', 'this connection is not among the caller’s allowed connections', { connection_id: conn.id });
      if (!granted) return { conn };
      const grant = granted.find((g) => g.connection_id === conn.id);
      if (!grant) throw new StackError('FORBIDDEN', 'the passport does not grant this connection', { connection_id: conn.id });
      return { conn, grant };
    }
    const all = connections.filter((c) => c.service_id === service && (!allowed || allowed.includes(c.id)));
    const usable = granted ? all.filter((c) => granted.some((g) => g.connection_id === c.id)) : all;
    if (usable.length === 0) throw new StackError('NOT_FOUND', `no usable connection of '${service}'`);
    if (usable.length > 1) {
      throw new StackError('AMBIGUOUS_CONNECTION', `several connections of '${service}' can be used: name one by its id`, { connections: usable.map((c) => ({ id: c.id, name: c.name })) });
    }
    return { conn: usable[0]!, grant: granted?.find((g) => g.connection_id === usable[0]!.id) };
  }

  async run(caller: CallerContext, call: ProxyRequest, channel: Channel, signal?: AbortLike): Promise<ProxyResponse> {
    const started = performance.now();
    let auth: Authority | undefined;
    const target: { conn?: ConnectionRow; req?: CanonicalRequest; entry?: CatalogEntry } = {};
    try {
      auth = await this.authority(caller, call.passport_token);
      // One read of the directory serves both the connection and, for a custom service, its entry.
      const known = await this.d.connections.rows(auth.operatorId);
      const { conn, grant } = this.choose(auth, call.service, known.connections);
      target.conn = conn;
      const entry = this.d.catalog.findIn(known.services, conn.service_id);
      if (!entry) throw new StackError('NOT_FOUND', `the service '${conn.service_id}' is no longer in the catalog`);
      target.entry = entry;
      const base = new URL(conn.base_url ?? entry.base_url);
      const req = canonicalise(call, base);
      target.req = req;

      const basePath = base.pathname.replace(/\/+$/, '');
      const relative = basePath && (req.pathname === basePath || req.pathname.startsWith(`${basePath}/`)) ? req.pathname.slice(basePath.length) || '/' : req.pathname;
      enforceScopes(grant?.scopes, requiredScopes(entry, req.method, relative, req), req.method, relative);
      if (grant) enforceConstraints(grant.constraints, req);
      // Against the connection's effective base URL: its scheme, and its port unless an allowed host names another.
      enforceAllowedHost(connectionHosts(entry, conn.base_url ? base : undefined), base, req);
      const address = await this.d.guard.resolve(req.hostname);

      const callerTarget = requestTarget(req);
      const idem = call.idempotency_key && req.method !== 'GET' && req.method !== 'HEAD' ? await this.d.idempotency.begin(auth.operatorId, conn.id, call.idempotency_key, fingerprintOf(conn.id, req, callerTarget, channel.name)) : undefined;
      if (idem && 'replay' in idem) {
        this.audit(auth, 'credential.proxy.replayed', 'success', target, started);
        return idem.replay;
      }
      try {
        // Durable before acting (DESIGN.md §6): no audit record, no call.
        await this.d.audit.record(this.entry(auth, 'credential.proxy', 'success', target));
        const response = await this.forward({ auth, conn, entry, req, address, channel, signal, started });
        await idem?.commit({ response });
        this.audit(auth, 'credential.proxy.completed', response.status < 400 ? 'success' : 'failure', target, started, response.status < 400 ? undefined : `UPSTREAM_STATUS_${response.status}`);
        return response;
      } catch (err) {
        if (idem && err instanceof StackError) await idem.commit({ error: err });
        throw err;
      }
    } catch (err) {
      const e = err instanceof StackError ? err : new StackError('INTERNAL_ERROR', 'the proxy call failed');
      if (!(err instanceof StackError)) this.d.logger.error({ err }, 'proxy call failed');
      if (auth && e.code !== 'AUDIT_UNAVAILABLE') {
        const denied = ['FORBIDDEN', 'OUT_OF_SCOPE', 'CONSTRAINT_VIOLATION', 'NOT_FOUND', 'AMBIGUOUS_CONNECTION', 'INVALID_REQUEST', 'IDEMPOTENCY_CONFLICT', 'PASSPORT_REVOKED'].includes(e.code);
        this.audit(auth, 'credential.proxy', denied ? 'denied' : 'failure', target, started, e.code);
      }
      throw e;
    }
  }

  private async forward(f: { auth: Authority; conn: ConnectionRow; entry: CatalogEntry; req: CanonicalRequest; address: ResolvedAddress; channel: Channel; signal?: AbortLike; started: number }): Promise<ProxyResponse> {
    const { auth, conn, entry, req, address, channel, signal, started } = f;
    const credential = await this.d.oauth.credential(conn, entry);
    const secrets = secretStrings(credential);
    const injected = inject(entry.auth, credential, req.headers, req.query);
    const headers: Record<string, string> = { ...req.headers, ...lower(entry.default_headers ?? {}), ...injected.headers, 'accept-encoding': 'identity' };
    if (req.body) headers['content-length'] = String(req.body.length);
    const tracked = this.d.inFlight.track(auth.subject);
    try {
      const res = await this.d.upstream.send({
        origin: req.origin,
        address,
        method: req.method,
        target: requestTarget(req, injected.query),
        headers,
        body: req.body,
        timeoutMs: this.d.timeoutMs,
        maxBytes: channel.maxBytes,
        overflow: channel.overflow,
        signals: signal ? [tracked.signal, signal] : [tracked.signal],
      });
      const encoding = res.headers['content-encoding'];
      if (encoding && encoding.toLowerCase() !== 'identity') throw new StackError('UPSTREAM_ERROR', 'the upstream answered compressed although identity was asked for', { content_encoding: encoding });
      if (tracked.signal.aborted) throw tracked.signal.reason instanceof StackError ? tracked.signal.reason : new StackError('PASSPORT_REVOKED', 'the passport was revoked during the call');
      let body = scrub(res.body, secrets);
      if (res.truncated) body = trimSecretPrefixTail(body, secrets);
      const outHeaders: Record<string, string> = {};
      for (const [name, value] of Object.entries(res.headers)) {
        if (HOP_BY_HOP.has(name)) continue;
        outHeaders[name] = scrub(Buffer.from(value, 'utf8'), secrets).toString('utf8');
      }
      const textual = TEXTUAL.test(res.headers['content-type'] ?? 'text/plain');
      return {
        status: res.status,
        headers: outHeaders,
        body: textual ? body.toString('utf8') : body.toString('base64'),
        body_encoding: textual ? 'utf8' : 'base64',
        truncated: res.truncated,
        connection_id: conn.id,
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      };
    } finally {
      tracked.release();
    }
  }

  private entry(auth: Authority, action: string, outcome: AuditEntryInput['outcome'], t: { conn?: ConnectionRow; req?: CanonicalRequest }, errorCode?: string): AuditEntryInput {
    return {
      layer: 'proxy',
      action,
      outcome,
      caller: auth.caller,
      operator_id: auth.operatorId,
      ...(auth.claims ? { passport_jti: auth.claims.jti, agent_id: auth.claims.stk.agent_id, session_id: auth.claims.stk.session_id } : {}),
      target: { service: t.conn?.service_id, connection: t.conn?.id, method: t.req?.method, host: t.req?.host, path: t.req?.pathname },
      ...(errorCode ? { error_code: errorCode } : {}),
    };
  }

  /**
   * Completion and refusal records: the caller's answer does not wait for them. The entry is
   * taken now (its duration ends here); building and publishing it waits for the next turn of the
   * event loop, after the answer has been written.
   */
  private audit(auth: Authority, action: string, outcome: AuditEntryInput['outcome'], t: { conn?: ConnectionRow; req?: CanonicalRequest }, started: number, errorCode?: string): void {
    const input = this.entry(auth, action, outcome, t, errorCode);
    input.duration_ms = performance.now() - started;
    input.occurred_at = new Date();
    setImmediate(() => {
      this.d.audit.record(input).catch((err: unknown) => this.d.logger.warn({ err, action, operator_id: input.operator_id, connection: input.target?.connection }, 'audit record of a proxy call failed'));
    });
  }
}

function lower(h: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}
