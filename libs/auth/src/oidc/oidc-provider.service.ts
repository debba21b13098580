/**
 * The OAuth 2.1 authorization server: oidc-provider configured for MCP clients and mounted on
 * the process's Express app under /oauth (plus both discovery documents). Issuer = the public
 * origin with no path; PKCE S256 required; resource indicators bind every access token to the
 * MCP resource (the default) or the REST API; access tokens are RFC 9068 JWTs signed with auth's
 * own Ed25519 keys; refresh tokens rotate with a grace window (see postgres-adapter.ts).
 */
import { hkdfSync } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { DEFAULT_SCOPES, OAUTH_JWKS_PATH, STACK_SCOPES, StackError, apiResource, mcpResource } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';
import { AccessTokenVerifier } from '@stack/security';
import type { Application, NextFunction, Request, Response } from 'express';
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import { AccountsService } from '../accounts/accounts.service';
import { ClientAddressResolver } from '../client-address';
import { errorPage } from '../pages/html';
import { createGuardedFetch } from './guarded-fetch';
import { PostgresOidcAdapter, sweepExpiredPayloads } from './postgres-adapter';
import { redirectUriProblem } from './redirect-uri';
import { loadOrCreateSigningKeys, publicJwks, type SigningJwk } from './signing-keys';

export const OIDC_ROUTES = {
  authorization: '/oauth/authorize',
  token: '/oauth/token',
  registration: '/oauth/register',
  jwks: OAUTH_JWKS_PATH,
  revocation: '/oauth/revoke',
  introspection: '/oauth/introspect',
  userinfo: '/oauth/userinfo',
  end_session: '/oauth/logout',
  pushed_authorization_request: '/oauth/par',
  code_verification: '/oauth/device',
  device_authorization: '/oauth/device/auth',
  backchannel_authentication: '/oauth/backchannel',
  challenge: '/oauth/challenge',
} as const;

/** Caps on what an unauthenticated client may register (and auth then stores). */
export const REGISTRATION_LIMITS = { bodyBytes: 64 * 1024, uris: 20, uriChars: 2000, nameChars: 200 } as const;
/** Registrations per client address: 20, then one every 30 s. */
export const REGISTRATION_BUCKET = { capacity: 20, refillPerSecond: 1 / 30 };

/**
 * A request path as oidc-provider's router matches it (case-insensitive, a trailing slash
 * ignored): the policies below hold on every spelling that reaches a route.
 */
export function routeOf(path: string): string {
  return path.toLowerCase().replace(/\/+$/, '') || '/';
}

/**
 * What the authorization endpoint reads of a request, with STACK's defaults: a client that sends
 * no scope gets the default scopes and offline_access instead of a refusal; and one that asks for
 * offline_access gets prompt=consent added (unless it said prompt=none), without which
 * oidc-provider drops offline_access and the client gets no refresh token — an MCP client would
 * then sign in again in the browser every hour. Returns the new URL, or undefined when unchanged.
 */
export function authorizationDefaults(requestUrl: string): string | undefined {
  const url = new URL(requestUrl, 'http://x');
  let changed = false;
  if (!url.searchParams.get('scope')) {
    url.searchParams.set('scope', [...DEFAULT_SCOPES, 'offline_access'].join(' '));
    changed = true;
  }
  const scopes = url.searchParams.get('scope')!.split(' ');
  const prompts = (url.searchParams.get('prompt') ?? '').split(' ').filter(Boolean);
  if (scopes.includes('offline_access') && !prompts.includes('consent') && !prompts.includes('none')) {
    url.searchParams.set('prompt', [...prompts, 'consent'].join(' '));
    changed = true;
  }
  return changed ? `${url.pathname}${url.search}` : undefined;
}

const TTL = {
  AccessToken: 3600,
  AuthorizationCode: 60,
  RefreshToken: 30 * 24 * 3600,
  Grant: 30 * 24 * 3600,
  Interaction: 3600,
  Session: 14 * 24 * 3600,
  IdToken: 3600,
};

@Injectable()
export class OidcProviderService implements OnModuleInit, OnModuleDestroy {
  provider!: Provider;
  private keys: SigningJwk[] = [];
  readonly addresses: ClientAddressResolver;
  private apiVerifier!: AccessTokenVerifier;
  private sweeper?: NodeJS.Timeout;

  constructor(
    @Inject(serviceKitToken('auth')) private readonly kit: ServiceKit,
    private readonly accounts: AccountsService,
    private readonly adapterHost: HttpAdapterHost,
  ) {
    this.addresses = new ClientAddressResolver(kit.config.trustedProxies);
  }

  get issuer(): string {
    return this.kit.config.publicUrl;
  }

  async onModuleInit(): Promise<void> {
    const { config } = this.kit;
    if (!config.masterKeys) throw new Error('auth needs STACK_MASTER_KEYS (or the generated local key) to seal its signing keys');
    this.keys = await loadOrCreateSigningKeys(this.kit.dataSource, config.masterKeys);
    this.provider = this.build();
    this.apiVerifier = new AccessTokenVerifier({ issuer: this.issuer, audience: apiResource(this.issuer), loadKeys: async () => publicJwks(this.keys) });
    this.mount(this.adapterHost.httpAdapter.getInstance<Application>());
    await this.bootstrapOwner();
    this.sweeper = setInterval(() => {
      sweepExpiredPayloads(this.kit.dataSource).catch((err: unknown) => this.kit.logger.warn({ err: (err as Error).message }, 'sweeping expired OAuth rows failed'));
    }, 10 * 60_000);
    this.sweeper.unref();
  }

  onModuleDestroy(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /** Verifies an access token issued for the REST API (`${public}/v1`). */
  verifyApiToken(token: string) {
    return this.apiVerifier.verify(token);
  }

  private async bootstrapOwner(): Promise<void> {
    const { bootstrapOwnerEmail: email, bootstrapOwnerPassword: password } = this.kit.config;
    if (!email || !password) return;
    if ((await this.accounts.countMembers()) > 0) return;
    try {
      const created = await this.accounts.createOperatorWithOwner({ operatorName: 'My team', email, password });
      this.kit.logger.info({ operator_id: created.operator_id, member_id: created.member_id }, 'first owner created from STACK_BOOTSTRAP_OWNER_EMAIL');
    } catch (err) {
      // Another replica may have created it at the same moment.
      this.kit.logger.warn({ err: (err as Error).message }, 'bootstrap owner not created');
    }
  }

  private build(): Provider {
    const { config, dataSource } = this.kit;
    const mcp = mcpResource(this.issuer);
    const api = apiResource(this.issuer);
    const masterKey = Buffer.from((config.masterKeys ?? '').split(',')[0]!.split(':')[1] ?? '', 'base64');
    // Cookie keys every replica derives alike, so a browser may land on any of them.
    const cookieKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.from('stack-auth'), Buffer.from('oidc-cookies'), 32)).toString('base64url');
    const accounts = this.accounts;

    const configuration: Configuration = {
      adapter: (name: string) => new PostgresOidcAdapter(name, dataSource),
      clients: [],
      jwks: { keys: this.keys as unknown as NonNullable<Configuration['jwks']>['keys'] },
      cookies: { keys: [cookieKey], long: { signed: true, sameSite: 'lax' }, short: { signed: true, sameSite: 'lax' } },
      routes: OIDC_ROUTES,
      scopes: ['openid', 'offline_access', ...STACK_SCOPES],
      claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
      responseTypes: ['code'],
      pkce: { required: () => true },
      clientDefaults: {
        // MCP clients send no application_type; as native clients their loopback redirect URIs may use any port.
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        id_token_signed_response_alg: 'EdDSA',
      },
      enabledJWA: { idTokenSigningAlgValues: ['EdDSA'], userinfoSigningAlgValues: ['EdDSA'] },
      ttl: TTL,
      rotateRefreshToken: true,
      issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
      findAccount: async (_ctx, id) => {
        const member = await accounts.findMember(id);
        if (!member || member.status !== 'active') return undefined;
        return { accountId: id, claims: async () => ({ sub: id, email: member.email, name: member.name }) };
      },
      extraTokenClaims: async (_ctx, token) => {
        if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
        const member = await accounts.findMember(token.accountId);
        if (!member) return undefined;
        return { stk: { operator_id: member.operator_id, member_id: member.id, grant_id: token.grantId } };
      },
      loadExistingGrant: async (ctx) => {
        const oidc = ctx.oidc;
        const clientId = oidc.client?.clientId;
        const grantId =
          (oidc.result?.consent as { grantId?: string } | undefined)?.grantId ??
          (clientId ? oidc.session?.grantIdFor(clientId) : undefined) ??
          (clientId && oidc.session?.accountId ? (await accounts.connectedApp(oidc.session.accountId, clientId))?.grant_id : undefined);
        return grantId ? oidc.provider.Grant.find(grantId) : undefined;
      },
      interactions: {
        url: async (_ctx, interaction) => (interaction.prompt.name === 'login' ? `/login?uid=${interaction.uid}` : `/consent?uid=${interaction.uid}`),
      },
      // Every URL oidc-provider fetches (client metadata documents) goes through the SSRF guard.
      fetch: createGuardedFetch({ privateAllowlist: config.proxyPrivateAllowlist }) as unknown as Configuration['fetch'],
      features: {
        devInteractions: { enabled: false },
        // A client_id that is an https URL names its own metadata document (draft-ietf-oauth-client-id-metadata-document).
        clientIdMetadataDocument: {
          enabled: true,
          ack: 'draft-02',
          cacheDuration: { min: 60, max: 3600 },
          allowClient: async (_ctx, client) => (client.redirectUris ?? []).every((uri) => redirectUriProblem(uri) === undefined),
        },
        registration: { enabled: true, initialAccessToken: false },
        revocation: { enabled: true },
        introspection: { enabled: true },
        userinfo: { enabled: false },
        rpInitiatedLogout: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => oneOf ?? mcp,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, resource) => {
            if (resource !== mcp && resource !== api) throw new errors.InvalidTarget(`unknown resource; use ${mcp} or ${api}`);
            return { scope: STACK_SCOPES.join(' '), audience: resource, accessTokenTTL: TTL.AccessToken, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'EdDSA' } } };
          },
        },
      },
      renderError: async (ctx: KoaContextWithOIDC, out) => {
        ctx.type = 'html';
        ctx.body = errorPage(String(out.error ?? 'error'), String(out.error_description ?? 'The request could not be completed.'));
      },
    };
    const provider = new Provider(this.issuer, configuration);
    // Koa reads the host and protocol from X-Forwarded-*, which mount() sets to the public origin.
    provider.proxy = true;
    provider.on('server_error', (_ctx: unknown, err: Error) => this.kit.logger.error({ err: { message: err.message, stack: err.stack } }, 'authorization server error'));
    return provider;
  }

  private mount(app: Application): void {
    const callback = this.provider.callback();
    const discovery = '/.well-known/openid-configuration';
    app.use(async (req: Request, res: Response, next: NextFunction) => {
      const path = req.path;
      const ours = path === discovery || path === '/.well-known/oauth-authorization-server' || path === '/oauth' || path.startsWith('/oauth/');
      if (!ours) return next();
      // Every URL the provider writes (discovery, redirects) is on the public origin, however
      // the request reached this process (straight, or through any proxy).
      const publicOrigin = new URL(this.issuer);
      req.headers['x-forwarded-host'] = publicOrigin.host;
      req.headers['x-forwarded-proto'] = publicOrigin.protocol.slice(0, -1);
      delete req.headers['x-forwarded-port'];
      if (!this.addresses.isTrusted(req.socket.remoteAddress)) delete req.headers['x-forwarded-for'];
      // RFC 8414 metadata: the same document oidc-provider serves for OIDC discovery.
      if (path === '/.well-known/oauth-authorization-server') req.url = discovery;
      const route = routeOf(path);
      if (req.method === 'POST' && route === OIDC_ROUTES.registration) {
        const refusal = await this.registrationRefusal(req);
        if (refusal) {
          if (refusal.retryAfterS) res.setHeader('Retry-After', String(refusal.retryAfterS));
          res.status(refusal.status).json(refusal.body);
          return;
        }
      }
      if (req.method === 'GET' && route === OIDC_ROUTES.authorization) {
        const rewritten = authorizationDefaults(req.url);
        if (rewritten) req.url = rewritten;
      }
      callback(req as IncomingMessage, res as ServerResponse);
    });
  }

  /**
   * Why a dynamic registration is refused, if it is: too many from the client's address (every
   * attempt counts), a body over the cap, or metadata outside the policy.
   */
  private async registrationRefusal(req: Request): Promise<{ status: number; body: unknown; retryAfterS?: number } | undefined> {
    const address = this.addresses.resolve(req);
    const taken = await this.kit.cache.takeToken(`auth:register:addr:${address}`, REGISTRATION_BUCKET);
    if (!taken.allowed) {
      const retryAfterS = Math.max(1, Math.ceil(taken.retryAfterMs / 1000));
      this.kit.logger.warn({ address, throttled: 'registration' }, 'client registration throttled');
      return { status: 429, retryAfterS, body: { error: new StackError('RATE_LIMITED', `too many client registrations; retry in ${retryAfterS} s`, { retry_after_s: retryAfterS }).toBody() } };
    }
    // The runtime has parsed the body already (up to its own, larger limit): both what was sent and what it holds count.
    const sent = Number(req.headers['content-length']);
    if ((Number.isFinite(sent) && sent > REGISTRATION_LIMITS.bodyBytes) || Buffer.byteLength(JSON.stringify(req.body ?? null)) > REGISTRATION_LIMITS.bodyBytes) {
      return { status: 413, body: { error: new StackError('PAYLOAD_TOO_LARGE', `client metadata is limited to ${REGISTRATION_LIMITS.bodyBytes / 1024} KB`).toBody() } };
    }
    const problem = this.registrationProblem(req.body);
    return problem ? { status: 400, body: { error: problem.error, error_description: problem.description } } : undefined;
  }

  private registrationProblem(body: unknown): { error: string; description: string } | undefined {
    if (!body || typeof body !== 'object') return undefined; // oidc-provider answers a missing body itself
    const meta = body as Record<string, unknown>;
    if (meta.token_endpoint_auth_method !== undefined && meta.token_endpoint_auth_method !== 'none') {
      return { error: 'invalid_client_metadata', description: 'only public clients register here: token_endpoint_auth_method must be none' };
    }
    // Public clients only: an omitted method means `none` here (RFC 7591's default would be a secret).
    meta.token_endpoint_auth_method ??= 'none';
    const { uris, uriChars, nameChars } = REGISTRATION_LIMITS;
    if (typeof meta.client_name === 'string' && meta.client_name.length > nameChars) return { error: 'invalid_client_metadata', description: `client_name is at most ${nameChars} characters` };
    // Every URI field (`*_uri`) and list of them (`*_uris`: redirect_uris and the like).
    for (const [field, value] of Object.entries(meta)) {
      const list = field.endsWith('_uris') && Array.isArray(value) ? (value as unknown[]) : field.endsWith('_uri') ? [value] : [];
      if (list.length > uris) return { error: 'invalid_client_metadata', description: `${field} lists at most ${uris} URIs` };
      if (list.some((u) => typeof u === 'string' && u.length > uriChars)) return { error: 'invalid_client_metadata', description: `${field}: a URI is at most ${uriChars} characters` };
    }
    if (Array.isArray(meta.redirect_uris)) {
      for (const uri of meta.redirect_uris) {
        const problem = redirectUriProblem(uri);
        if (problem) return { error: 'invalid_redirect_uri', description: problem };
      }
    }
    return undefined;
  }
}
