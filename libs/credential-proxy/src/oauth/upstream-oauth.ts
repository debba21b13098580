/**
 * Upstream OAuth 2 with STACK as the client (issue 6): authorization code + PKCE (S256), the
 * callback under /v1/connections/oauth/callback, and tokens refreshed before they expire — one
 * refresh at a time across every replica. In this process concurrent callers share one promise;
 * across processes a cache lock (`setIfAbsent`, Redis when configured) elects one refresher while
 * the others poll the connection row until the new token lands. A refresh the provider refuses
 * marks the connection `needs_reauth`; a provider that is down or rate-limiting (5xx, 429) does not —
 * the call fails with UPSTREAM_ERROR and the next one tries again, as does a token answer STACK
 * cannot use (not a JSON object, no usable access_token).
 *
 * Login CSRF (RFC 6749 §10.12): `start` hands out a STACK page, not the provider's URL. The page
 * names the operator, the connection and the member who started it; pressing Continue binds the
 * authorization to that browser (a random value in an HttpOnly, SameSite=Lax cookie, its hash in
 * the cache, once per state) and redirects to the provider. The callback stores nothing unless
 * the browser that arrives carries that cookie.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

import type { Cache } from '@stack/cache';
import { StackError } from '@stack/contracts';
import type { StackLogger } from '@stack/observability';
import type { SealedSecret } from '@stack/security';

import type { CatalogEntry, UpstreamOAuth as OAuthEndpoints } from '../catalog/catalog.types';
import type { ConnectionRepository, ConnectionRow } from '../connections/connection.repository';
import { causeCode } from '../proxy/cause-code';
import { MIN_TOKEN_LENGTH, type Credential, type CredentialVault } from '../vault/credential-vault';

/**
 * Token-endpoint errors that refuse STACK's client, not the member's grant (RFC 6749 §5.2
 * `invalid_client`, `unauthorized_client`; GitHub's and Slack's spellings): a refresh refused so
 * leaves the connection as it is — a deployment fix, not every member, mends it.
 */
const CLIENT_REFUSED = new Set(['invalid_client', 'unauthorized_client', 'incorrect_client_credentials', 'invalid_client_id', 'bad_client_secret']);

/**
 * Token-endpoint errors that say the member's grant is gone (RFC 6749 §5.2 `invalid_grant`;
 * GitHub's `bad_refresh_token`, Slack's `invalid_refresh_token`, `token_revoked`, `token_expired`
 * and the like): only these make a connection need a new authorization. Any other refusal (a
 * 404, a redirect, `invalid_request`, no error at all) says the endpoint or STACK's request is
 * wrong, which a deployment fix mends: the connection is kept.
 */
const GRANT_REFUSED = new Set(['invalid_grant', 'bad_refresh_token', 'invalid_refresh_token', 'token_revoked', 'token_expired', 'expired_token', 'invalid_token', 'access_denied', 'account_inactive']);

/** Refresh this long before `expires_at`, so a token never expires mid-call. */
export const REFRESH_SKEW_MS = 60_000;
const LOCK_TTL_MS = 30_000;
export const STATE_TTL_MS = 10 * 60_000;
/** Longest token life believed (a larger `expires_in` is read as this). */
const MAX_EXPIRES_IN_S = 365 * 86_400;

/** The page the human opens to continue to the provider, and where the provider sends them back. */
export const OAUTH_CONFIRM_PATH = '/v1/connections/oauth/confirm';
export const OAUTH_CALLBACK_PATH = '/v1/connections/oauth/callback';

/**
 * Tokens a refresh got that the database did not take (sealed, bound to the connection), kept in
 * the cache so the next refresh stores them rather than spending a refresh token the provider may
 * have retired. `replaces`: the ciphertext of the secret they replace, so they never overwrite a newer one.
 */
interface UnsavedRefresh {
  secret: SealedSecret;
  /** Epoch ms. */
  expires_at: number | null;
  scopes?: string[];
  replaces: string;
}
const UNSAVED_TTL_MS = 7 * 86_400_000;

export interface PendingAuthorization {
  operator_id: string;
  member_id?: string;
  service_id: string;
  name: string;
  verifier: string;
  /** The scopes asked for: stored when the provider's answer does not name the granted ones. */
  scopes: string[];
  /** The confirmation page's CSRF token. */
  csrf: string;
  /** Epoch ms. */
  expires_at: number;
}

/** A token endpoint's answer, each field kept only when it has the type RFC 6749 §5.1 gives it. */
interface TokenAnswer {
  access_token?: string;
  refresh_token?: string;
  token_type?: string;
  expires_in?: number;
  scope?: string;
  /** RFC 6749 §5.2: the provider's error code when it refuses. */
  error?: unknown;
}

interface TokenResult {
  ok: boolean;
  status: number;
  body: TokenAnswer;
  /** Why a 2xx answer cannot be used (no JSON object, no usable access_token); never holds a token. */
  unusable?: string;
}

/** Reads a token endpoint's JSON (anything, `null` included) into a TokenAnswer. */
export function readTokenAnswer(raw: unknown): { body: TokenAnswer; unusable?: string } {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return { body: {}, unusable: 'the answer is not a JSON object' };
  const r = raw as Record<string, unknown>;
  const body: TokenAnswer = { error: r.error };
  if (typeof r.access_token === 'string') body.access_token = r.access_token;
  if (typeof r.refresh_token === 'string') body.refresh_token = r.refresh_token;
  if (typeof r.token_type === 'string') body.token_type = r.token_type;
  if (typeof r.scope === 'string') body.scope = r.scope;
  // Some providers send numbers as strings ("3600").
  const expiresIn = typeof r.expires_in === 'string' && /^\d{1,12}$/.test(r.expires_in.trim()) ? Number(r.expires_in.trim()) : r.expires_in;
  if (typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0) body.expires_in = Math.min(expiresIn, MAX_EXPIRES_IN_S);
  let unusable: string | undefined;
  if (typeof r.access_token !== 'string') unusable = 'access_token is missing or not a string';
  else if (r.access_token.length < MIN_TOKEN_LENGTH) unusable = 'access_token is too short';
  else if (r.refresh_token !== undefined && r.refresh_token !== null && (typeof r.refresh_token !== 'string' || r.refresh_token.length < MIN_TOKEN_LENGTH)) unusable = 'refresh_token is not a usable string';
  return { body, unusable };
}

/** The granted scopes: RFC 6749 separates them with spaces; GitHub, Slack and Linear use commas. */
export function grantedScopes(scope: string, separator = ' '): string[] {
  const parts = scope.split(/[\s,]+/).flatMap((s) => (separator.trim() ? s.split(separator) : [s]));
  return [...new Set(parts.filter(Boolean))];
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
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

/** A connection a new authorization may renew in place: an OAuth one the provider stopped honouring. */
function reauthorizable(conn: Pick<ConnectionRow, 'kind' | 'status'>): boolean {
  return conn.kind === 'oauth2' && conn.status === 'needs_reauth';
}

function nameTaken(entry: CatalogEntry, name: string): StackError {
  return new StackError('INVALID_REQUEST', `a connection named '${name}' already exists for ${entry.name}`, { reason: 'name_taken' });
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
    return `${this.o.publicUrl}${OAUTH_CALLBACK_PATH}`;
  }

  private client(entry: CatalogEntry): { clientId: string; clientSecret: string; endpoints: OAuthEndpoints } {
    const client = this.o.clients[entry.service_id];
    if (!entry.oauth || !client) throw new StackError('INVALID_REQUEST', `${entry.name} has no OAuth client configured (STACK_UPSTREAM_OAUTH_CLIENTS)`);
    return { ...client, endpoints: entry.oauth };
  }

  /**
   * Starts an authorization: `url` is STACK's confirmation page (the human opens it; it leads to
   * the provider), `authorize_url` the same URL under its earlier name.
   */
  async start(input: { entry: CatalogEntry; operatorId: string; memberId?: string; name: string; scopes?: string[] }): Promise<{ url: string; authorize_url: string; state: string; expires_at: string }> {
    const { endpoints } = this.client(input.entry);
    // A name already taken is refused now, not after the human went through the provider — unless
    // it is an OAuth connection waiting to be authorised again, which the callback then renews.
    const existing = await this.o.repo.findByName(input.operatorId, input.entry.service_id, input.name);
    if (existing && !reauthorizable(existing)) throw nameTaken(input.entry, input.name);
    const state = randomBytes(24).toString('base64url');
    const expiresAt = this.now() + STATE_TTL_MS;
    const pending: PendingAuthorization = {
      operator_id: input.operatorId,
      member_id: input.memberId,
      service_id: input.entry.service_id,
      name: input.name,
      verifier: randomBytes(48).toString('base64url'),
      scopes: input.scopes ?? [...endpoints.default_scopes],
      csrf: randomBytes(24).toString('base64url'),
      expires_at: expiresAt,
    };
    await this.o.cache.setJson(`cp:oauth-state:${state}`, pending, { ttlMs: STATE_TTL_MS });
    const url = `${this.o.publicUrl}${OAUTH_CONFIRM_PATH}?state=${encodeURIComponent(state)}`;
    return { url, authorize_url: url, state, expires_at: new Date(expiresAt).toISOString() };
  }

  /** A pending authorization and its service, for the confirmation page. */
  async pending(state: string, findEntry: (operatorId: string, serviceId: string) => Promise<CatalogEntry | undefined>): Promise<{ pending: PendingAuthorization; entry: CatalogEntry }> {
    const pending = state ? await this.o.cache.getJson<PendingAuthorization>(`cp:oauth-state:${state}`) : undefined;
    if (!pending) throw new StackError('INVALID_REQUEST', 'this authorization is unknown, expired or already used; start the connection again');
    const entry = await findEntry(pending.operator_id, pending.service_id);
    if (!entry) throw new StackError('NOT_FOUND', 'the service no longer exists');
    return { pending, entry };
  }

  /**
   * The human pressed Continue on the confirmation page (its CSRF token checked by the caller):
   * binds the authorization to this browser — once — and gives the provider's authorize URL and
   * the cookie value that must come back with the callback.
   */
  async proceed(state: string, pending: PendingAuthorization, entry: CatalogEntry): Promise<{ authorize_url: string; binding: string; max_age_s: number }> {
    const { clientId, endpoints } = this.client(entry);
    const ttlMs = pending.expires_at - this.now();
    if (ttlMs <= 0) throw new StackError('INVALID_REQUEST', 'this authorization has expired; start the connection again');
    const binding = randomBytes(24).toString('base64url');
    if (!(await this.o.cache.setIfAbsent(`cp:oauth-bind:${state}`, digest(binding).toString('base64url'), { ttlMs }))) {
      throw new StackError('FORBIDDEN', 'this link was already used to continue; start the connection again');
    }
    const url = new URL(endpoints.authorize_url);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', clientId);
    url.searchParams.set('redirect_uri', this.redirectUri);
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', createHash('sha256').update(pending.verifier).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    if (pending.scopes.length) url.searchParams.set('scope', pending.scopes.join(endpoints.scope_separator ?? ' '));
    return { authorize_url: url.toString(), binding, max_age_s: Math.ceil(ttlMs / 1000) };
  }

  /**
   * The callback: the browser must carry the binding set by `proceed`; then one use of `state`,
   * the code exchanged with the PKCE verifier, the connection stored.
   */
  async complete(input: { code: string; state: string; binding: string | undefined; findEntry: (operatorId: string, serviceId: string) => Promise<CatalogEntry | undefined> }): Promise<ConnectionRow> {
    const key = `cp:oauth-state:${input.state}`;
    const bindKey = `cp:oauth-bind:${input.state}`;
    const pending = await this.o.cache.getJson<PendingAuthorization>(key);
    if (!pending) throw new StackError('INVALID_REQUEST', 'this authorization is unknown, expired or already used');
    const bound = await this.o.cache.get(bindKey);
    if (!bound || !input.binding || !timingSafeEqual(Buffer.from(bound), Buffer.from(digest(input.binding).toString('base64url')))) {
      this.o.logger.warn({ operator_id: pending.operator_id, service: pending.service_id }, 'oauth: a callback arrived from a browser that did not continue the authorization; nothing stored');
      throw new StackError('FORBIDDEN', 'this authorization was not continued from this browser; open the link from STACK and press Continue');
    }
    if (!(await this.o.cache.del(key))) throw new StackError('INVALID_REQUEST', 'this authorization is unknown, expired or already used');
    await this.o.cache.del(bindKey);
    const entry = await input.findEntry(pending.operator_id, pending.service_id);
    if (!entry) throw new StackError('NOT_FOUND', 'the service no longer exists');
    let answer: TokenResult;
    try {
      answer = await this.token(entry, { grant_type: 'authorization_code', code: input.code, redirect_uri: this.redirectUri, code_verifier: pending.verifier });
    } catch (err) {
      this.o.logger.warn({ operator_id: pending.operator_id, service: entry.service_id, cause_code: causeCode(err) ?? (err instanceof Error ? err.name : undefined) }, 'oauth: the token endpoint could not be reached to exchange an authorization code');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} could not be reached to complete the connection`);
    }
    if (!answer.ok || answer.unusable || !answer.body.access_token) {
      this.o.logger.warn({ operator_id: pending.operator_id, service: entry.service_id, status: answer.status, oauth_error: oauthError(answer.body), unusable: answer.ok ? answer.unusable : undefined }, 'oauth: the provider refused the authorization code or answered without a usable token');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} refused the authorization code`);
    }
    const credential: Credential = { kind: 'oauth2', access_token: answer.body.access_token, refresh_token: answer.body.refresh_token, token_type: answer.body.token_type };
    // RFC 6749 §5.1: no `scope` in the answer means the scopes asked for were granted.
    const scopes = answer.body.scope !== undefined ? grantedScopes(answer.body.scope, entry.oauth?.scope_separator) : pending.scopes;
    const expiresAt = this.expiry(answer.body);
    const existing = await this.o.repo.findByName(pending.operator_id, entry.service_id, pending.name);
    if (existing) {
      if (!reauthorizable(existing)) throw nameTaken(entry, pending.name);
      // Authorised again: the same connection (its id, and so every grant naming it) with the new tokens, active.
      const sealed = await this.o.vault.seal(existing.operator_id, existing.id, credential);
      if (!(await this.o.repo.replaceSecret(existing.operator_id, existing.id, sealed, expiresAt, { scopes, status: 'active' }))) {
        this.o.vault.forget(existing.operator_id, existing.id);
        throw new StackError('NOT_FOUND', 'the connection no longer exists; start the connection again');
      }
      return { ...existing, secret: sealed, key_id: sealed.kid, status: 'active', scopes, expires_at: expiresAt };
    }
    const id = this.o.newConnectionId();
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
      scopes,
      expires_at: expiresAt,
      created_by: pending.member_id ?? null,
    });
    if (!row) {
      // Taken meanwhile: the tokens just sealed are not kept anywhere.
      this.o.vault.forget(pending.operator_id, id);
      throw nameTaken(entry, pending.name);
    }
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
    return body.expires_in !== undefined ? new Date(this.now() + body.expires_in * 1000) : null;
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
    const unsavedKey = `cp:oauth-unsaved:${conn.id}`;
    const unsaved = await this.o.cache.getJson<UnsavedRefresh>(unsavedKey);
    if (unsaved) {
      // An earlier refresh whose answer the database did not take: store it instead of spending the refresh token it may have retired.
      const expiresAt = unsaved.expires_at === null ? null : new Date(unsaved.expires_at);
      const opened = unsaved.replaces === conn.secret.ct ? await this.o.vault.open(conn.operator_id, conn.id, unsaved.secret).catch(() => undefined) : undefined;
      if (opened) {
        if (!(await this.o.repo.replaceSecret(conn.operator_id, conn.id, unsaved.secret, expiresAt, { scopes: unsaved.scopes }))) {
          this.o.vault.forget(conn.operator_id, conn.id);
          await this.o.cache.del(unsavedKey);
          throw new StackError('NOT_FOUND', 'the connection no longer exists');
        }
        conn = { ...conn, secret: unsaved.secret, key_id: unsaved.secret.kid, expires_at: expiresAt, status: 'active' };
      }
      await this.o.cache.del(unsavedKey);
      if (opened && !this.due(conn)) return opened;
      if (opened) return this.refreshWith(conn, entry, opened, unsavedKey);
    }
    return this.refreshWith(conn, entry, await this.o.vault.open(conn.operator_id, conn.id, conn.secret), unsavedKey);
  }

  /** The refresh itself, with `old` the connection's credential as stored (opened once). */
  private async refreshWith(conn: ConnectionRow, entry: CatalogEntry, old: Credential, unsavedKey: string): Promise<Credential> {
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
    const refusal = oauthError(answer.body);
    if (answer.ok && answer.unusable && refusal === undefined) {
      // A 2xx STACK cannot use is not a refusal: the refresh token may still be good, the next call tries again.
      this.o.logger.warn({ connection_id: conn.id, service: entry.service_id, status: answer.status, unusable: answer.unusable }, 'oauth: the provider answered a token refresh without a usable token; the connection is kept');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} answered the token refresh without a usable token; try again`, { upstream_status: answer.status });
    }
    if (CLIENT_REFUSED.has(refusal ?? '')) {
      // STACK's own client credentials were refused (a rotated or mistyped client secret): the member's grant says nothing, and stays.
      this.o.logger.warn({ connection_id: conn.id, service: entry.service_id, status: answer.status, oauth_error: refusal }, 'oauth: the provider refused STACK’s OAuth client while refreshing a token (check STACK_UPSTREAM_OAUTH_CLIENTS); the connection is kept');
      throw new StackError('UPSTREAM_ERROR', `${entry.name} refused STACK's OAuth client while refreshing the token`, { upstream_status: answer.status });
    }
    if ((!answer.ok || refusal !== undefined) && !GRANT_REFUSED.has(refusal ?? '')) {
      // Refused, but not the grant: a misconfigured or moved token endpoint (404, a redirect), or a request the provider could not read.
      this.o.logger.warn(
        { connection_id: conn.id, service: entry.service_id, status: answer.status, oauth_error: refusal, token_url: this.client(entry).endpoints.token_url },
        'oauth: the provider refused a token refresh without saying the grant is gone (check the service’s token endpoint); the connection is kept',
      );
      throw new StackError('UPSTREAM_ERROR', `${entry.name} refused the token refresh (status ${answer.status}${refusal ? `, ${refusal}` : ''}); the connection is kept`, { upstream_status: answer.status });
    }
    if (!answer.ok || answer.unusable || !answer.body.access_token) {
      // Only while the row still holds the tokens refused: a replica whose lock outlived ours may have refreshed meanwhile (the provider then refuses the refresh token it retired).
      if ((await this.o.repo.setStatus(conn.operator_id, conn.id, 'needs_reauth', { ifSecretCt: conn.secret.ct })) === false) {
        const now = await this.o.repo.find(conn.operator_id, conn.id);
        if (!now) throw new StackError('NOT_FOUND', 'the connection no longer exists');
        if (now.status === 'needs_reauth') throw needsReauth(now);
        if (!this.due(now)) return this.o.vault.open(now.operator_id, now.id, now.secret);
        throw new StackError('UPSTREAM_ERROR', `${entry.name} refused a token refresh that another one overtook; try again`, { upstream_status: answer.status });
      }
      this.o.logger.warn({ connection_id: conn.id, service: entry.service_id, status: answer.status, oauth_error: refusal }, 'oauth: the provider refused the token refresh; the connection needs a new authorization');
      throw needsReauth(conn);
    }
    const fresh: Credential = { kind: 'oauth2', access_token: answer.body.access_token, refresh_token: answer.body.refresh_token ?? old.refresh_token, token_type: answer.body.token_type };
    // RFC 6749 §5.1: a `scope` in the answer replaces the stored scopes; none leaves them as they are.
    const scopes = answer.body.scope !== undefined ? grantedScopes(answer.body.scope, entry.oauth?.scope_separator) : undefined;
    const sealed = await this.o.vault.seal(conn.operator_id, conn.id, fresh);
    const expiresAt = this.expiry(answer.body);
    let stored: boolean;
    try {
      stored = await this.o.repo.replaceSecret(conn.operator_id, conn.id, sealed, expiresAt, { scopes });
    } catch (err) {
      // The provider may already have retired the refresh token just spent: keep the new tokens (sealed) for the next refresh to store.
      const unsavedRefresh: UnsavedRefresh = { secret: sealed, expires_at: expiresAt?.getTime() ?? null, scopes, replaces: conn.secret.ct };
      const kept = await this.o.cache.setJson(unsavedKey, unsavedRefresh, { ttlMs: UNSAVED_TTL_MS }).then(
        () => true,
        () => false,
      );
      this.o.logger.warn(
        { connection_id: conn.id, service: entry.service_id, kept, cause_code: causeCode(err) ?? (err instanceof Error ? err.name : undefined) },
        kept
          ? 'oauth: a refreshed token could not be stored; it is kept in the cache and the next refresh stores it'
          : 'oauth: a refreshed token could not be stored, nor kept in the cache; if the provider retired the old refresh token, the connection will need a new authorization by a member',
      );
      throw err;
    }
    if (!stored) {
      // Disconnected while the refresh ran: the new tokens leave the log redactor too.
      this.o.vault.forget(conn.operator_id, conn.id);
      throw new StackError('NOT_FOUND', 'the connection no longer exists');
    }
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
    let raw: unknown;
    try {
      raw = await res.json();
    } catch {
      raw = undefined;
    }
    const { body, unusable } = readTokenAnswer(raw);
    return { ok: res.ok, status: res.status, body, unusable };
  }
}
