/**
 * One place that turns a bearer credential into a caller, for every service that takes
 * requests from outside (REST endpoints, the MCP gateway, the proxy):
 * - an API key `sk_live_…`, resolved by auth over the bus (its scopes never more than its
 *   member's role allows), cached briefly and forgotten on any revocation; a key whose id
 *   (`api_key` revocation) or member is revoked in this node's state is refused, cached or not;
 * - an OAuth access token (RFC 9068 JWT from auth), verified locally against auth's JWKS for the
 *   resource it is presented to, then checked against this node's revocation state (member,
 *   grant, client);
 * - a passport (passport+jwt), verified offline with the passport service's keys (fetched over
 *   the bus, refetched on an unknown kid) and checked against the revocation state, which also
 *   tracks the calls made with it so a revocation can cut them.
 * A stale node refuses what it cannot check (REVOCATION_STATE_STALE).
 * The caller carries `allowed_connections` when limited: a member's (from auth: with the API key's
 * answer, or asked over the bus for an access token, cached briefly and forgotten on any
 * revocation), or, for a passport, the connections it grants.
 */
import { createHash } from 'node:crypto';

import { Inject, Injectable, Module } from '@nestjs/common';

import type { Bus, BusConnection } from '@stack/bus';
import type { StackConfig } from '@stack/config';
import { ACCESS_TOKEN_TYP, PASSPORT_COMMANDS, PASSPORT_TYP, ResolveApiKeyCommand, ResolveMemberAccessCommand, StackError, apiResource, mcpResource, scopesOfRole, type CallerContext } from '@stack/contracts';
import { AccessTokenVerifier, CallerContextSigner, PassportVerifier, RefreshOnMiss, publicKeyOfJwk, type VerifiedPassport } from '@stack/security';
import type { KeyObject } from 'node:crypto';

import { RevocationHost, RevocationModule } from './revocation.module';
import { TOKENS } from './service-definition';

export type CredentialKind = 'api_key' | 'oauth' | 'passport' | 'internal';

const INTERNAL_CALLER_TYP = 'stack-caller+jwt';

export interface ResolvedCredential {
  kind: CredentialKind;
  /** What the caller's requests carry on the bus. */
  caller: CallerContext;
  /** For a passport: its verified claims and revocation subject. */
  passport?: VerifiedPassport;
}

/** The resource a credential is presented to: an access token is only good at its own. */
export type Resource = 'api' | 'mcp';

/** How long a node trusts auth's answer for an API key before asking again. */
const API_KEY_CACHE_MS = 30_000;
/**
 * How long auth's `api_key` revocation entry lives: past the longest a node may hold the key's
 * answer (a resolution in flight when the key was revoked, then the cache), with room for bus
 * delay and clock skew. After that auth refuses the key at lookup, which it does from the revoke on.
 */
export const API_KEY_REVOCATION_TTL_MS = API_KEY_CACHE_MS + 5 * 60_000;

export function bearerOf(authorization: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return m?.[1];
}

/** Header segment → its `typ`: a handful of distinct headers in practice (one per key and kind of token). */
const typOfHeader = new Map<string, string | undefined>();
const TYP_MEMO_LIMIT = 256;

export function jwtTyp(token: string): string | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  const segment = token.slice(0, dot);
  if (typOfHeader.has(segment)) return typOfHeader.get(segment);
  let typ: string | undefined;
  try {
    const header = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as { typ?: unknown };
    typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : undefined;
  } catch {
    typ = undefined;
  }
  // Headers are the caller's to choose: a flood of new ones only empties the memo.
  if (typOfHeader.size >= TYP_MEMO_LIMIT) typOfHeader.clear();
  typOfHeader.set(segment, typ);
  return typ;
}

/**
 * The caller a passport stands for: one object per verified passport (the verifier keeps those
 * while they are valid), so the bus signer finds it by identity instead of serialising it again
 * for every message a request sends. Frozen: it is shared by every request with the passport.
 */
const passportCallers = new WeakMap<VerifiedPassport, CallerContext>();

function passportCaller(p: VerifiedPassport): CallerContext {
  let caller = passportCallers.get(p);
  if (!caller) {
    const stk = p.claims.stk;
    caller = Object.freeze({
      issuer: 'passport',
      kind: 'agent',
      operator_id: stk.operator_id,
      member_id: stk.member_id,
      agent_id: stk.agent_id,
      passport_jti: p.claims.jti,
      session_id: stk.session_id,
      // An agent with a passport uses services and drop-offs; the passport itself says which.
      scopes: Object.freeze(['stack:services', 'stack:dropoffs']) as string[],
      allowed_connections: Object.freeze(stk.services.map((s) => s.connection_id)) as string[],
    } satisfies CallerContext);
    passportCallers.set(p, caller);
  }
  return caller;
}

@Injectable()
export class Credentials {
  private readonly bus: Bus;
  private readonly accessTokens: Record<Resource, AccessTokenVerifier>;
  readonly passports: PassportVerifier;
  private readonly apiKeys = new Map<string, { caller: CallerContext; apiKeyId: string; memberId: string; until: number }>();
  /** Members' `allowed_connections` for access tokens (undefined: not limited). */
  private readonly memberAccess = new Map<string, { allowed: string[] | undefined; until: number }>();
  private passportKeys = new Map<string, KeyObject>();
  /** An unknown kid fetches the key set again over the bus, shared and paced. */
  private readonly passportKeyLookup = new RefreshOnMiss<KeyObject>({
    lookup: (kid) => this.passportKeys.get(kid),
    refresh: async () => {
      const { keys } = await this.bus.request(PASSPORT_COMMANDS.getJwks, {});
      this.passportKeys = new Map(keys.map((k) => [k.kid, publicKeyOfJwk(k)]));
    },
  });
  private readonly signer: CallerContextSigner;

  constructor(
    @Inject(TOKENS.busConnection) connection: BusConnection,
    @Inject(TOKENS.config) private readonly config: StackConfig,
    readonly revocations: RevocationHost,
  ) {
    this.bus = connection.forService(config.services[0]!);
    this.signer = new CallerContextSigner(Buffer.from(config.internalSecret ?? '', 'base64'));
    this.accessTokens = {
      api: new AccessTokenVerifier({ issuer: config.publicUrl, audience: apiResource(config.publicUrl) }),
      mcp: new AccessTokenVerifier({ issuer: config.publicUrl, audience: mcpResource(config.publicUrl) }),
    };
    this.passports = new PassportVerifier({ audience: config.publicUrl, keys: (kid) => this.passportKey(kid), revocations: revocations.state });
    // A revoked member's keys must stop working at once, not when the cache entry ages out.
    revocations.state.onRevoked(() => {
      this.apiKeys.clear();
      this.memberAccess.clear();
    });
  }

  /**
   * The caller of a REST request; StackError UNAUTHORIZED without a usable credential. Besides
   * STACK's credentials it accepts a caller context signed with STACK_INTERNAL_SECRET (what the
   * bus carries): operators' own tooling and the test suites use it; only a holder of the
   * internal secret can make one.
   */
  async restCaller(authorization: string | undefined): Promise<ResolvedCredential> {
    const token = bearerOf(authorization);
    if (!token) throw new StackError('UNAUTHORIZED', 'send Authorization: Bearer <API key, access token or passport>');
    const typ = jwtTyp(token);
    if (typ === INTERNAL_CALLER_TYP) {
      const caller = this.signer.verify(token);
      // A service acting for itself carries no scopes; lifted off the bus it must not open REST.
      if (caller.kind === 'system') throw new StackError('UNAUTHORIZED', 'a service context is not a REST credential');
      return { kind: 'internal', caller };
    }
    return this.resolveTyped(token, typ, 'api');
  }

  resolve(token: string, resource: Resource): Promise<ResolvedCredential> {
    return this.resolveTyped(token, jwtTyp(token), resource);
  }

  private async resolveTyped(token: string, typ: string | undefined, resource: Resource): Promise<ResolvedCredential> {
    if (token.startsWith('sk_live_')) return { kind: 'api_key', caller: await this.apiKey(token) };
    if (typ === ACCESS_TOKEN_TYP) {
      const t = await this.accessTokens[resource].verify(token);
      // The operator is left out on purpose: "revoke all passports" must not sign members out.
      this.revocations.state.check({ member_id: t.stk.member_id, grant_id: t.stk.grant_id, client_id: t.client_id, issued_at_ms: t.iat * 1000 });
      const allowed = await this.allowedConnections(t.stk.operator_id, t.stk.member_id);
      return {
        kind: 'oauth',
        caller: { issuer: 'auth', kind: 'member', operator_id: t.stk.operator_id, member_id: t.stk.member_id, client_id: t.client_id, scopes: t.scopes, ...(allowed ? { allowed_connections: allowed } : {}) },
      };
    }
    if (typ === PASSPORT_TYP) {
      const p = await this.passports.verify(token);
      return { kind: 'passport', passport: p, caller: passportCaller(p) };
    }
    throw new StackError('UNAUTHORIZED', 'unrecognised bearer credential');
  }

  private async apiKey(key: string): Promise<CallerContext> {
    const id = createHash('sha256').update(key).digest('base64url');
    const hit = this.apiKeys.get(id);
    const now = Date.now();
    if (hit && hit.until > now) {
      this.refuseRevokedKey(hit.apiKeyId, hit.memberId);
      return hit.caller;
    }
    this.revocations.state.assertFresh();
    const r = await this.bus.request(ResolveApiKeyCommand, { api_key: key });
    // The answer may have left auth before a revocation this node has applied since.
    this.refuseRevokedKey(r.api_key_id, r.member_id);
    // Never more than the member's role allows, whatever the answer lists; never none (a caller
    // without scopes would be read as unrestricted).
    const allowed: string[] = scopesOfRole(r.role);
    const scopes = r.scopes.filter((s) => allowed.includes(s));
    if (!scopes.length) throw new StackError('UNAUTHORIZED', "API key holds no scope its member's role allows");
    const caller: CallerContext = { issuer: 'auth', kind: 'member', operator_id: r.operator_id, member_id: r.member_id, scopes, ...(r.allowed_connections ? { allowed_connections: r.allowed_connections } : {}) };
    if (this.apiKeys.size >= 10_000) this.apiKeys.clear();
    this.apiKeys.set(id, { caller, apiKeyId: r.api_key_id, memberId: r.member_id, until: now + API_KEY_CACHE_MS });
    return caller;
  }

  /**
   * UNAUTHORIZED (as auth answers for it) when this node's revocation state holds the key's id or
   * its member. Neither is ever reinstated, so the key's creation time does not matter: the
   * subject is stamped as issued at 0. The operator is left out, as for access tokens.
   */
  private refuseRevokedKey(apiKeyId: string, memberId: string): void {
    const hit = this.revocations.state.revocationOf({ api_key_id: apiKeyId, member_id: memberId, issued_at_ms: 0 });
    if (hit) throw new StackError('UNAUTHORIZED', 'API key is unknown or revoked');
  }

  /** A member's `allowed_connections` (undefined: not limited), asked of auth and cached like API keys. */
  private async allowedConnections(operatorId: string, memberId: string): Promise<string[] | undefined> {
    const key = `${operatorId}:${memberId}`;
    const hit = this.memberAccess.get(key);
    const now = Date.now();
    if (hit && hit.until > now) return hit.allowed;
    const r = await this.bus.request(ResolveMemberAccessCommand, { operator_id: operatorId, member_id: memberId }).catch((err: unknown) => {
      throw err instanceof StackError && err.code === 'NOT_FOUND' ? new StackError('UNAUTHORIZED', 'the member of this token is no longer active') : err;
    });
    if (this.memberAccess.size >= 10_000) this.memberAccess.clear();
    this.memberAccess.set(key, { allowed: r.allowed_connections, until: now + API_KEY_CACHE_MS });
    return r.allowed_connections;
  }

  /** The passport service's public key `kid`: an unknown kid fetches the key set again (RefreshOnMiss). */
  private passportKey(kid: string): Promise<KeyObject | undefined> {
    return this.passportKeyLookup.get(kid);
  }
}

@Module({ imports: [RevocationModule], providers: [Credentials], exports: [Credentials, RevocationModule] })
export class CredentialsModule {}
