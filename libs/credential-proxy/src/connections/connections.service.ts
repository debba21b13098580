/**
 * Connections over REST and the bus: create an API-key or basic connection (the answer never
 * holds the secret), list, read, verify and disconnect them, define custom services, and the
 * `stack_connect_service` flow — a short-lived link where the human, not the model, pastes the
 * secret. Another operator's connection is NOT_FOUND.
 *
 * Managing connections (create, connect links, OAuth start, verify, disconnect, custom services)
 * is for members: an agent is FORBIDDEN. Reads need stack:services and show only the connections
 * the caller may use (`allowed_connections`: a member's list, or a passport's grants); any other
 * is NOT_FOUND to read and FORBIDDEN to act on.
 */
import { randomBytes } from 'node:crypto';

import type { Cache } from '@stack/cache';
import { StackError, type CallerContext, type ConnectionView } from '@stack/contracts';

import type { Catalog } from '../catalog/catalog';
import { hostAllowed, portOf, siteRequired } from '../catalog/catalog';
import type { CatalogEntry, InjectionType } from '../catalog/catalog.types';
import type { ProxyPipeline } from '../proxy/proxy-pipeline';
import { credentialProblem, type Credential, type CredentialVault } from '../vault/credential-vault';
import type { ConnectionDirectory } from './connection-directory';
import type { ConnectionRepository, ConnectionRow } from './connection.repository';

export interface ConnectSession {
  operator_id: string;
  member_id?: string;
  service_id: string;
  name: string;
  /** The connection's own base URL (its site, for Jira), checked when the link was made. */
  base_url?: string;
  csrf: string;
}

export const CONNECT_LINK_TTL_MS = 15 * 60_000;
export const CONNECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$/;
const SERVICE_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export function newConnectionId(): string {
  return `scon_${randomBytes(15).toString('base64url').replace(/[-_]/g, 'x')}`;
}

export function viewOf(c: ConnectionRow): ConnectionView {
  return {
    id: c.id,
    service_id: c.service_id,
    name: c.name,
    kind: c.kind,
    status: c.status,
    base_url: c.base_url,
    expires_at: c.expires_at?.toISOString() ?? null,
    created_at: c.created_at.toISOString(),
    verified_at: c.verified_at?.toISOString() ?? null,
  };
}

export function operatorOf(caller: CallerContext): string {
  if (!caller.operator_id || caller.kind === 'system') throw new StackError('UNAUTHORIZED', 'this call needs a member of an operator');
  return caller.operator_id;
}

export function requireScope(caller: CallerContext, scope: string): void {
  if (!caller.scopes.includes(scope) && !caller.scopes.includes('stack:admin')) throw new StackError('FORBIDDEN', `this call needs the ${scope} scope`, { required_scopes: [scope] });
}

/** Connections are managed by members (their API keys, access tokens, or signed contexts), never by agents. */
export function requireMember(caller: CallerContext): void {
  if (caller.kind !== 'member' || caller.passport_jti) throw new StackError('FORBIDDEN', 'connections are managed by members, not agents');
}

/** The operator of a member who may manage connections (stack:services). */
export function managerOf(caller: CallerContext): string {
  const operatorId = operatorOf(caller);
  requireMember(caller);
  requireScope(caller, 'stack:services');
  return operatorId;
}

/**
 * managerOf, for making a new connection: not a member limited to some connections. Such a
 * member could otherwise add a connection the others then use unaware — a token of an account
 * they control under a name the team trusts — while their own list keeps them from its calls.
 */
export function creatorOf(caller: CallerContext): string {
  const operatorId = managerOf(caller);
  if (caller.allowed_connections) throw new StackError('FORBIDDEN', 'a member limited to some connections cannot add connections; an admin can', { reason: 'connections_limited' });
  return operatorId;
}

/** Whether the caller may see and use the connection: its `allowed_connections` when set; an agent without them none. */
export function mayUse(caller: CallerContext, connectionId: string): boolean {
  if (caller.allowed_connections) return caller.allowed_connections.includes(connectionId);
  return caller.kind !== 'agent' && !caller.passport_jti;
}

/** Reads `{token} | {value} | {username, password}` without echoing any of it in an error. */
export function parseCredential(entry: CatalogEntry, raw: unknown): Credential {
  if (!raw || typeof raw !== 'object') throw new StackError('INVALID_REQUEST', 'credential must be {token}, {value} or {username, password}');
  const c = raw as Record<string, unknown>;
  const str = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 8192 && !/[\r\n\0]/.test(v);
  let credential: Credential;
  if (str(c.username) && str(c.password)) credential = { kind: 'basic', username: c.username as string, password: c.password as string };
  else if (str(c.token)) credential = { kind: 'token', token: c.token as string };
  else if (str(c.value)) credential = { kind: 'value', value: c.value as string };
  else throw new StackError('INVALID_REQUEST', 'credential must be {token}, {value} or {username, password} (non-empty, one line)');
  if ((entry.auth.type === 'basic') !== (credential.kind === 'basic')) {
    throw new StackError('INVALID_REQUEST', entry.auth.type === 'basic' ? `${entry.name} takes {username, password}` : `${entry.name} takes {token} or {value}`);
  }
  // Too short to keep out of the logs (the vault refuses it too).
  const problem = credentialProblem(credential);
  if (problem) throw new StackError('INVALID_REQUEST', problem);
  return credential;
}

/** A `base_url` as given: an absolute http(s) URL, or INVALID_REQUEST. */
function httpBaseUrl(value: unknown): URL {
  let u: URL;
  try {
    u = new URL(String(value));
  } catch {
    throw new StackError('INVALID_REQUEST', 'base_url must be an absolute URL');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new StackError('INVALID_REQUEST', 'base_url must be http or https');
  return u;
}

/**
 * A new connection's own base URL, or null for the service's: the same rule as every call (the
 * service's scheme, an allowed host, its port unless the allowed host names another). Required
 * where the service has no one host (Jira Cloud: each team's site).
 */
export function connectionBaseUrl(entry: CatalogEntry, value: unknown): string | null {
  if (value === undefined) {
    if (siteRequired(entry)) throw new StackError('INVALID_REQUEST', `base_url is required for ${entry.name}: the URL of your own site (one of ${entry.allowed_hosts.join(', ')})`, { reason: 'base_url_required' });
    return null;
  }
  const u = httpBaseUrl(value);
  const serviceBase = new URL(entry.base_url);
  if (u.protocol !== serviceBase.protocol) throw new StackError('INVALID_REQUEST', `base_url must use ${entry.name}'s scheme (${serviceBase.protocol})`);
  if (!hostAllowed(entry.allowed_hosts, u.host, portOf(u), portOf(serviceBase))) throw new StackError('INVALID_REQUEST', `base_url must be on one of ${entry.name}'s allowed hosts and ports`);
  return u.toString().replace(/\/$/, '');
}

export class ConnectionsService {
  constructor(
    private readonly d: {
      repo: ConnectionRepository;
      /** The proxy's view of the same rows, checked against the shared generation on every read. */
      directory: Pick<ConnectionDirectory, 'rows'>;
      catalog: Catalog;
      vault: CredentialVault;
      cache: Cache;
      pipeline: ProxyPipeline;
      publicUrl: string;
    },
  ) {}

  async create(caller: CallerContext, input: { service_id?: unknown; name?: unknown; credential?: unknown; base_url?: unknown }): Promise<ConnectionView> {
    const operatorId = creatorOf(caller);
    return viewOf(await this.insert(operatorId, caller.member_id, await this.prepare(operatorId, input)));
  }

  private nameTaken(entry: CatalogEntry, name: string): StackError {
    return new StackError('INVALID_REQUEST', `a connection named '${name}' already exists for ${entry.name}`, { reason: 'name_taken' });
  }

  /** Every check of a new connection, its name still free included, before anything is written. */
  private async prepare(operatorId: string, input: { service_id?: unknown; name?: unknown; credential?: unknown; base_url?: unknown }): Promise<{ entry: CatalogEntry; name: string; baseUrl: string | null; credential: Credential }> {
    if (typeof input.service_id !== 'string') throw new StackError('INVALID_REQUEST', 'service_id is required');
    const name = input.name === undefined ? 'default' : input.name;
    if (typeof name !== 'string' || !CONNECTION_NAME.test(name)) throw new StackError('INVALID_REQUEST', 'name must be 1-64 letters, digits, spaces, _ . or -');
    const entry = await this.d.catalog.find(operatorId, input.service_id);
    if (!entry) throw new StackError('NOT_FOUND', `no service '${input.service_id}' in the catalog`);
    const baseUrl = connectionBaseUrl(entry, input.base_url);
    const credential = parseCredential(entry, input.credential);
    if (await this.d.repo.findByName(operatorId, entry.service_id, name)) throw this.nameTaken(entry, name);
    return { entry, name, baseUrl, credential };
  }

  private async insert(operatorId: string, memberId: string | undefined, p: { entry: CatalogEntry; name: string; baseUrl: string | null; credential: Credential }): Promise<ConnectionRow> {
    const { entry, name, baseUrl, credential } = p;
    const id = newConnectionId();
    const sealed = await this.d.vault.seal(operatorId, id, credential);
    const row = await this.d.repo.insert({
      id,
      operator_id: operatorId,
      service_id: entry.service_id,
      name,
      kind: credential.kind === 'basic' ? 'basic' : 'api_key',
      status: 'active',
      secret: sealed,
      key_id: sealed.kid,
      base_url: baseUrl,
      scopes: [],
      expires_at: null,
      created_by: memberId ?? null,
    });
    // A concurrent create of the same name: the unique key decides.
    if (!row) throw this.nameTaken(entry, name);
    return row;
  }

  async list(caller: CallerContext, serviceId?: string): Promise<ConnectionView[]> {
    const operatorId = operatorOf(caller);
    requireScope(caller, 'stack:services');
    return (await this.d.repo.list(operatorId, serviceId)).filter((c) => mayUse(caller, c.id)).map(viewOf);
  }

  async get(caller: CallerContext, id: string): Promise<ConnectionView> {
    const operatorId = operatorOf(caller);
    requireScope(caller, 'stack:services');
    const row = await this.d.repo.find(operatorId, id);
    if (!row || !mayUse(caller, row.id)) throw new StackError('NOT_FOUND', `no connection '${id}'`);
    return viewOf(row);
  }

  /** A connection of the operator the member acts on: NOT_FOUND when absent, FORBIDDEN outside the member's allowed connections. */
  private async managed(caller: CallerContext, operatorId: string, id: string): Promise<ConnectionRow> {
    const row = await this.d.repo.find(operatorId, id);
    if (!row) throw new StackError('NOT_FOUND', `no connection '${id}'`);
    if (!mayUse(caller, row.id)) throw new StackError('FORBIDDEN', 'this connection is not among the member’s allowed connections', { connection_id: row.id });
    return row;
  }

  async disconnect(caller: CallerContext, id: string): Promise<{ id: string; deleted: true }> {
    const operatorId = managerOf(caller);
    await this.managed(caller, operatorId, id);
    const deleted = await this.d.repo.delete(operatorId, id);
    // Gone either way (a concurrent disconnect may have won): its secrets leave the log redactor.
    this.d.vault.forget(operatorId, id);
    if (!deleted) throw new StackError('NOT_FOUND', `no connection '${id}'`);
    return { id, deleted: true };
  }

  /** Makes the catalog's cheap "who am I" call through the proxy pipeline itself. */
  async verify(caller: CallerContext, id: string): Promise<{ id: string; ok: boolean; status?: number; error?: string }> {
    const operatorId = managerOf(caller);
    const row = await this.managed(caller, operatorId, id);
    const entry = await this.d.catalog.find(operatorId, row.service_id);
    if (!entry?.verify) return { id, ok: true };
    try {
      const res = await this.d.pipeline.run(caller, { service: id, method: entry.verify.method, path: entry.verify.path }, { name: 'rest', maxBytes: 64 * 1024, overflow: 'truncate' });
      const ok = res.status >= 200 && res.status < 300;
      if (ok) await this.d.repo.markVerified(operatorId, id);
      return { id, ok, status: res.status };
    } catch (err) {
      if (err instanceof StackError) return { id, ok: false, error: err.code };
      throw err;
    }
  }

  async listServices(caller: CallerContext): Promise<Array<{ service_id: string; name: string; base_url: string; auth: { type: InjectionType; name?: string }; allowed_hosts: readonly string[]; scopes: readonly string[]; builtin: boolean; oauth: boolean; connections: ConnectionView[] }>> {
    const operatorId = operatorOf(caller);
    requireScope(caller, 'stack:services');
    // The catalog's custom services and the connections from one directory read.
    const { connections: conns, services } = await this.d.directory.rows(operatorId);
    return this.d.catalog.listIn(services).map((e) => ({
      service_id: e.service_id,
      name: e.name,
      base_url: e.base_url,
      auth: { type: e.auth.type, ...(e.auth.name ? { name: e.auth.name } : {}) },
      allowed_hosts: e.allowed_hosts,
      scopes: e.scopes,
      builtin: e.builtin,
      oauth: Boolean(e.oauth),
      connections: conns.filter((c) => c.service_id === e.service_id && mayUse(caller, c.id)).map(viewOf),
    }));
  }

  async createService(caller: CallerContext, input: Record<string, unknown>): Promise<{ service_id: string }> {
    const operatorId = operatorOf(caller);
    requireMember(caller);
    if (!caller.scopes.includes('stack:admin')) throw new StackError('FORBIDDEN', 'defining a service needs the stack:admin scope', { required_scopes: ['stack:admin'] });
    const { service_id, name, base_url, auth, allowed_hosts } = input;
    if (typeof service_id !== 'string' || !SERVICE_ID.test(service_id)) throw new StackError('INVALID_REQUEST', 'service_id must be lower-case letters, digits, _ . -');
    if (this.d.catalog.builtin(service_id)) throw new StackError('INVALID_REQUEST', `'${service_id}' is a built-in service`);
    if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw new StackError('INVALID_REQUEST', 'name is required (at most 128 characters)');
    const base = httpBaseUrl(base_url);
    const a = (auth ?? {}) as { type?: unknown; name?: unknown };
    if (!['bearer', 'header', 'query', 'basic'].includes(String(a.type))) throw new StackError('INVALID_REQUEST', 'auth.type must be bearer, header, query or basic');
    if ((a.type === 'header' || a.type === 'query') && (typeof a.name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(a.name))) throw new StackError('INVALID_REQUEST', `auth.name is required for ${String(a.type)}`);
    const hosts = allowed_hosts === undefined ? [base.host] : allowed_hosts;
    if (!Array.isArray(hosts) || hosts.length === 0 || hosts.length > 32 || !hosts.every((h) => typeof h === 'string' && /^(\*|(\*\.)?[A-Za-z0-9.-]+(:\d+)?)$/.test(h))) {
      throw new StackError('INVALID_REQUEST', 'allowed_hosts must be 1-32 host names (`*.suffix` or `*` allowed)');
    }
    const ok = await this.d.repo.insertService({ operator_id: operatorId, service_id, name, base_url: base.toString().replace(/\/$/, ''), auth_type: String(a.type), auth_name: typeof a.name === 'string' ? a.name.toLowerCase() : null, allowed_hosts: hosts as string[] });
    if (!ok) throw new StackError('INVALID_REQUEST', `a service '${service_id}' already exists`);
    return { service_id };
  }

  /** `stack_connect_service`: a link the human opens to paste the secret (valid 15 minutes, once). */
  async connectLink(caller: CallerContext, input: { service_id?: unknown; name?: unknown; base_url?: unknown }): Promise<{ url: string; expires_at: string; service_id: string; name: string }> {
    const operatorId = creatorOf(caller);
    if (typeof input.service_id !== 'string') throw new StackError('INVALID_REQUEST', 'service_id is required');
    const entry = await this.d.catalog.find(operatorId, input.service_id);
    if (!entry) throw new StackError('NOT_FOUND', `no service '${input.service_id}' in the catalog`);
    const name = input.name === undefined ? 'default' : String(input.name);
    if (!CONNECTION_NAME.test(name)) throw new StackError('INVALID_REQUEST', 'name must be 1-64 letters, digits, spaces, _ . or -');
    const baseUrl = connectionBaseUrl(entry, input.base_url);
    if (await this.d.repo.findByName(operatorId, entry.service_id, name)) throw this.nameTaken(entry, name);
    const token = randomBytes(24).toString('base64url');
    const session: ConnectSession = { operator_id: operatorId, member_id: caller.member_id, service_id: entry.service_id, name, ...(baseUrl ? { base_url: baseUrl } : {}), csrf: randomBytes(24).toString('base64url') };
    await this.d.cache.setJson(`cp:connect:${token}`, session, { ttlMs: CONNECT_LINK_TTL_MS });
    return { url: `${this.d.publicUrl}/v1/connections/connect?token=${token}`, expires_at: new Date(Date.now() + CONNECT_LINK_TTL_MS).toISOString(), service_id: entry.service_id, name };
  }

  async connectSession(token: string): Promise<{ session: ConnectSession; entry: CatalogEntry }> {
    const session = /^[A-Za-z0-9_-]{20,64}$/.test(token) ? await this.d.cache.getJson<ConnectSession>(`cp:connect:${token}`) : undefined;
    if (!session) throw new StackError('NOT_FOUND', 'this link is unknown, expired or already used');
    const entry = await this.d.catalog.find(session.operator_id, session.service_id);
    if (!entry) throw new StackError('NOT_FOUND', 'the service no longer exists');
    return { session, entry };
  }

  /**
   * The form post: `session` is the one `connectSession(token)` gave the caller, who checked the
   * CSRF token against it. A paste that fails a check leaves the link usable; the link is used up
   * only once everything checked (once, even against a concurrent post).
   */
  async completeConnect(token: string, session: ConnectSession, credential: Record<string, string>): Promise<ConnectionView> {
    const prepared = await this.prepare(session.operator_id, { service_id: session.service_id, name: session.name, credential, ...(session.base_url ? { base_url: session.base_url } : {}) });
    if (!(await this.d.cache.del(`cp:connect:${token}`))) throw new StackError('NOT_FOUND', 'this link was already used');
    return viewOf(await this.insert(session.operator_id, session.member_id, prepared));
  }
}
