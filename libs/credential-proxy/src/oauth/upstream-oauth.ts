/**
 * Upstream OAuth 2 with STACK as the client (issue 6): authorization code + PKCE (S256), the
 * callback under /v1/connections/oauth/callback, and tokens refreshed before they expire — one
 * refresh at a time across every replica. In this process concurrent callers share one promise;
 * across processes a cache lock (`setIfAbsent`, Redis when configured) elects one refresher while
 * the others poll the connection row until the new token lands. A refresh the provider refuses
 * marks the connection `needs_reauth`; a provider that is down or rate-limiting (5xx, 429) does not —
 * the call fails with UPSTREAM_ERROR and the next one tries again.
 */
import { createHash, randomBytes } from 'node:crypto';

import type { Cache } from '@stack/cache';
import { StackError } from '@stack/contracts';
import type { StackLogger } from '@stack/observability';

import type { CatalogEntry, UpstreamOAuth as OAuthEndpoints } from '../catalog/catalog.types';
import type { ConnectionRepository, ConnectionRow } from '../connections/connection.repository';
import { causeCode } from '../proxy/cause-code';
import type { Credential, CredentialVault } from '../vault/credential-vault';

/** Refresh this long before `expires_at`, so a token never expires mid-call. */
export const REFRESH_SKEW_MS = 60_000;
const LOCK_TTL_MS = 30_000;
const STATE_TTL_MS = 10 * 60_000;

interface PendingAuthorization {
  operator_id: string;
  member_id?: string;
  service_id: string;
  name: string;
  verifier: string;
}

interface TokenAnswer {
  access_token?: string;
  refresh_token?: string;
  token_type?: string;
  expires_in?: number;
  /** RFC 6749 §5.2: the provider's error code when it refuses. */
  error?: unknown;
}

interface TokenResult {
  ok: boolean;
  status: number;
  body: TokenAnswer;
}

/** The provider's `error` code for a log line: a short printable string, or nothing. */
function oauthError(body: TokenAnswer): string | undefined {
  return typeof body.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(body.error) ? body.error : undefined;
}

export interface UpstreamOAuthOptions {
  repo: ConnectionRepository;
  vault: CredentialVault;
  cache: Cache;
  clients: Record<string, { clientId: string; clientSecret: string }>;
  publicUrl: string;
  newConnectionId: () => string;
  /** Refused or failed token requests are logged here: ids, status and the provider's error code, never a token. */
  logger: StackLogger;
  now?: () => number;
}

export function needsReauth(conn: Pick<ConnectionRow, 'id' | 'name'>): StackError {
  return new StackError('FORBIDDEN', `the connection '${conn.name}' must be authorised again by a member`, { reason: 'needs_reauth', connection_id: conn.id });
}

export class UpstreamOAuthManager {
  private readonly refreshing = new Map<string, Promise<Credential>>();
  private readonly now: () => number;

  constructor(private readonly o: UpstreamOAuthOptions) {
    this.now = o.now ?? Date.now;
  }

  get redirectUri(): string {
    return `${this.o.publicUrl}/v1/connections/oauth/callback`;
  }

  private client(entry: CatalogEntry): { clientId: string; clientSecret: string; endpoints: OAuthEndpoints } {
    const client = this.o.clients[entry.service_id];
    if (!entry.oauth || !client) throw new StackError('INVALID_REQUEST', `${entry.name} has no OAuth client configured (STACK_UPSTREAM_OAUTH_CLIENTS)`);
    return { ...client, endpoints: entry.oauth };
  }

  async start(input: { entry: CatalogEntry; operatorId: string; memberId?: string; name: string; scopes?: string[] }): Promise<{ authorize_url: string; state: string }> {
    const { clientId, endpoints } = this.client(input.entry);
    const state = randomBytes(24).toString('base64url');
    const verifier = randomBytes(48).toString('base64url');
    const pending: PendingAuthorization = { operator_id: input.operatorId, member_id: input.memberId, service_id: input.entry.service_id, name: input.name, verifier };
    await this.o.cache.setJson(`cp:oauth-state:${state}`, pending, { ttlMs: STATE_TTL_MS });
    const url = new URL(endpoints.authorize_url);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', clientId);
    url.searchParams.set('redirect_uri', this.redirectUri);
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', createHash('sha256').update(verifier).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    const scopes = input.scopes ?? endpoints.default_scopes;
    if (scopes.length) url.searchParams.set('scope', scopes.join(endpoints.scope_separator ?? ' '));
    return { authorize_url: url.toString(), state };
  }

  /** The callback: one use of `state`, the code exchanged with the PKCE verifier, the connection stored. */
  async complete(input: { code: string; state: string; findEntry: (operatorId: string, serviceId: string) => Promise<CatalogEntry | undefined> }): Promise<ConnectionRow> {
    const key = `cp:oauth-state:${input.state}`;
    const pending = await this.o.cache.getJson<PendingAuthorization>(key);
    if (!pending || !(await this.o.cache.del(key))) throw new StackError('INVALID_REQUEST', 'this authorization is unknown, expired or already used');
    const entry = await input.findEntry(pending.operator_id, pending.service_id);
    if (!entry) throw new StackError('NOT_FOUND', 'the service no longer exists');
    let answer: TokenResult;
    try {
      answer = await this.token(entry, { grant_type: 'authorization_code', code: input.code, redirect_uri: this.redirectUri, code_verifier: pending.verifier });
    } catch (err) {
      this.o.logger.warn({ operator_id: pending.operator_id, service: entry.service_id, cause_code: causeCode(err) ?? (err instanceof Error ? err.name : undefined) }, 'oauth: the token endpoint could not be reached to exchange an authorization code');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} could not be reached to complete the connection`);
    }
    if (!answer.ok || !answer.body.access_token) {
      this.o.logger.warn({ operator_id: pending.operator_id, service: entry.service_id, status: answer.status, oauth_error: oauthError(answer.body) }, 'oauth: the provider refused the authorization code');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} refused the authorization code`);
    }
    const id = this.o.newConnectionId();
    const credential: Credential = { kind: 'oauth2', access_token: answer.body.access_token, refresh_token: answer.body.refresh_token, token_type: answer.body.token_type };
    const sealed = await this.o.vault.seal(pending.operator_id, id, credential);
    const row = await this.o.repo.insert({
      id,
      operator_id: pending.operator_id,
      service_id: entry.service_id,
      name: pending.name,
      kind: 'oauth2',
      status: 'active',
      secret: sealed,
      key_id: sealed.kid,
      base_url: null,
      scopes: [],
      expires_at: this.expiry(answer.body),
      created_by: pending.member_id ?? null,
    });
    if (!row) throw new StackError('INVALID_REQUEST', `a connection named '${pending.name}' already exists for ${entry.name}`);
    return row;
  }

  /** The connection's credential, refreshed first when it is due. */
  async credential(conn: ConnectionRow, entry: CatalogEntry): Promise<Credential> {
    if (conn.kind !== 'oauth2') return this.o.vault.open(conn.operator_id, conn.id, conn.secret);
    if (conn.status === 'needs_reauth') throw needsReauth(conn);
    if (!this.due(conn)) return this.o.vault.open(conn.operator_id, conn.id, conn.secret);
    let shared = this.refreshing.get(conn.id);
    if (!shared) {
      shared = this.refreshAcrossReplicas(conn, entry).finally(() => this.refreshing.delete(conn.id));
      this.refreshing.set(conn.id, shared);
    }
    return shared;
  }

  private due(conn: Pick<ConnectionRow, 'expires_at'>): boolean {
    return conn.expires_at !== null && conn.expires_at.getTime() - this.now() <= REFRESH_SKEW_MS;
  }

  private expiry(body: TokenAnswer): Date | null {
    return typeof body.expires_in === 'number' && body.expires_in > 0 ? new Date(this.now() + body.expires_in * 1000) : null;
  }

  private async refreshAcrossReplicas(conn: ConnectionRow, entry: CatalogEntry): Promise<Credential> {
    const lock = `cp:oauth-refresh:${conn.id}`;
    const owner = randomBytes(12).toString('hex');
    const deadline = this.now() + LOCK_TTL_MS;
    for (;;) {
      const current = await this.o.repo.find(conn.operator_id, conn.id);
      if (!current) throw new StackError('NOT_FOUND', 'the connection no longer exists');
      if (current.status === 'needs_reauth') throw needsReauth(current);
      if (!this.due(current)) return this.o.vault.open(current.operator_id, current.id, current.secret);
      if (await this.o.cache.setIfAbsent(lock, owner, { ttlMs: LOCK_TTL_MS })) {
        try {
          // Read again under the lock: another replica may have finished just before we took it.
          const locked = (await this.o.repo.find(conn.operator_id, conn.id)) ?? current;
          if (!this.due(locked)) return this.o.vault.open(locked.operator_id, locked.id, locked.secret);
          return await this.refresh(locked, entry);
        } finally {
          await this.o.cache.delIfEquals(lock, owner);
        }
      }
      if (this.now() > deadline) throw new StackError('UPSTREAM_TIMEOUT', 'the upstream token refresh did not finish in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async refresh(conn: ConnectionRow, entry: CatalogEntry): Promise<Credential> {
    const old = await this.o.vault.open(conn.operator_id, conn.id, conn.secret);
    if (old.kind !== 'oauth2' || !old.refresh_token) {
      await this.o.repo.setStatus(conn.operator_id, conn.id, 'needs_reauth');
      throw needsReauth(conn);
    }
    let answer: TokenResult;
    try {
      answer = await this.token(entry, { grant_type: 'refresh_token', refresh_token: old.refresh_token });
    } catch (err) {
      this.o.logger.warn({ connection_id: conn.id, service: entry.service_id, cause_code: causeCode(err) ?? (err instanceof Error ? err.name : undefined) }, 'oauth: the token endpoint could not be reached to refresh a token');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} could not be reached to refresh the token`);
    }
    if (answer.status >= 500 || answer.status === 429) {
      // The provider is down or busy, not refusing: the refresh token stays good, the next call tries again.
      this.o.logger.warn({ connection_id: conn.id, service: entry.service_id, status: answer.status }, 'oauth: the provider could not refresh a token just now; the connection is kept');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} could not refresh the token just now (status ${answer.status}); try again`, { upstream_status: answer.status });
    }
    if (!answer.ok || !answer.body.access_token) {
      this.o.logger.warn({ connection_id: conn.id, service: entry.service_id, status: answer.status, oauth_error: oauthError(answer.body) }, 'oauth: the provider refused the token refresh; the connection needs a new authorization');
      await this.o.repo.setStatus(conn.operator_id, conn.id, 'needs_reauth');
      throw needsReauth(conn);
    }
    const fresh: Credential = { kind: 'oauth2', access_token: answer.body.access_token, refresh_token: answer.body.refresh_token ?? old.refresh_token, token_type: answer.body.token_type };
    const sealed = await this.o.vault.seal(conn.operator_id, conn.id, fresh);
    await this.o.repo.replaceSecret(conn.operator_id, conn.id, sealed, this.expiry(answer.body));
    return fresh;
  }

  /** The token endpoint is deployment configuration (catalog or override), not caller input. */
  private async token(entry: CatalogEntry, params: Record<string, string>): Promise<TokenResult> {
    const { clientId, clientSecret, endpoints } = this.client(entry);
    const res = await fetch(endpoints.token_url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ ...params, client_id: clientId, client_secret: clientSecret }).toString(),
      signal: AbortSignal.timeout(15_000),
      redirect: 'manual',
    });
    let body: TokenAnswer = {};
    try {
      body = (await res.json()) as TokenAnswer;
    } catch {
      body = {};
    }
    return { ok: res.ok, status: res.status, body };
  }
}
