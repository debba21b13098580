/**
 * Verifies auth's OAuth access tokens (RFC 9068 JWTs, `typ: at+jwt`) locally, so every service
 * checks a bearer token without a round trip to auth: the signature against the JWKS auth
 * publishes at /oauth/jwks (fetched once, cached, refetched when a token names an unknown key,
 * at most once per `minRefetchMs`), with the header's `alg` only when it is the key's own; then
 * `typ`, `iss`, `aud` (the resource the service is), `exp` and `nbf`. Revocation is the caller's
 * next step (the revocation set, or auth itself).
 */
import { createPublicKey, verify as verifySignature, type JsonWebKey, type KeyObject } from 'node:crypto';

import { ACCESS_TOKEN_TYP, OAUTH_JWKS_PATH, StackError, type AccessTokenStackClaims } from '@stack/contracts';

import { isCompactJws } from './compact-jws';

export interface VerifiedAccessToken {
  jti: string;
  /** The member id (the account the token acts for). */
  sub: string;
  client_id: string;
  scopes: string[];
  aud: string;
  iat: number;
  exp: number;
  stk: AccessTokenStackClaims;
}

export interface AccessTokenVerifierOptions {
  /** The issuer: STACK_PUBLIC_URL. */
  issuer: string;
  /** The resource this verifier guards, e.g. `${public}/v1`; a token for another resource is refused. */
  audience: string;
  /** Where the keys are; default `${issuer}/oauth/jwks`. */
  jwksUrl?: string;
  /** Or the keys themselves (auth verifies its own tokens without HTTP). */
  loadKeys?: () => Promise<JsonWebKey[]>;
  /** Seconds of clock skew tolerated on exp/nbf (default 5). */
  clockToleranceS?: number;
  /** Least time between two JWKS fetches triggered by unknown key ids (default 30 s). */
  minRefetchMs?: number;
  fetchImpl?: typeof fetch;
}

/** Accepted algorithms, each with the one kind of key it verifies with. */
const ALGS: Record<string, { crypto: string | null; kty: string; keyType: string; curve?: string }> = {
  EdDSA: { crypto: null, kty: 'OKP', keyType: 'ed25519' },
  Ed25519: { crypto: null, kty: 'OKP', keyType: 'ed25519' },
  ES256: { crypto: 'sha256', kty: 'EC', keyType: 'ec', curve: 'prime256v1' },
};

interface KnownKey {
  key: KeyObject;
  /** The `alg` the JWKS published the key for, if any. */
  alg?: string;
}

function acceptedAlg(name: unknown): (typeof ALGS)[string] | undefined {
  return typeof name === 'string' && Object.hasOwn(ALGS, name) ? ALGS[name] : undefined;
}

/** The key is of the algorithm's type (and curve), and published for it or for none. */
function keyFits(known: KnownKey, alg: (typeof ALGS)[string]): boolean {
  if (known.alg !== undefined && acceptedAlg(known.alg)?.keyType !== alg.keyType) return false;
  if (known.key.asymmetricKeyType !== alg.keyType) return false;
  return alg.curve === undefined || known.key.asymmetricKeyDetails?.namedCurve === alg.curve;
}

function b64json(part: string): Record<string, unknown> {
  const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
  return value as Record<string, unknown>;
}

function unauthorized(message: string): StackError {
  return new StackError('UNAUTHORIZED', message);
}

export class AccessTokenVerifier {
  private keys = new Map<string, KnownKey>();
  private lastFetch = 0;
  private fetching?: Promise<void>;

  constructor(private readonly options: AccessTokenVerifierOptions) {}

  /** Throws StackError UNAUTHORIZED naming what is wrong (never echoing the token). */
  async verify(token: string): Promise<VerifiedAccessToken> {
    if (!isCompactJws(token)) throw unauthorized('access token is not a JWS');
    const parts = token.split('.');
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = b64json(parts[0]!);
      claims = b64json(parts[1]!);
    } catch {
      throw unauthorized('access token is malformed');
    }
    if (typeof header.typ !== 'string' || header.typ.toLowerCase().replace(/^application\//, '') !== ACCESS_TOKEN_TYP) throw unauthorized('token is not an access token (typ)');
    const alg = acceptedAlg(header.alg);
    if (!alg) throw unauthorized('access token algorithm is not accepted');
    const kid = typeof header.kid === 'string' ? header.kid : '';
    const known = await this.keyFor(kid);
    if (!known) throw unauthorized('access token is signed with an unknown key');
    // The header names the algorithm, the key decides it: a mismatch is refused before any crypto.
    if (!keyFits(known, alg)) throw unauthorized('access token algorithm does not match its key');
    const signature = Buffer.from(parts[2]!, 'base64url');
    let ok = false;
    try {
      ok = verifySignature(alg.crypto, Buffer.from(`${parts[0]}.${parts[1]}`), alg.kty === 'EC' ? { key: known.key, dsaEncoding: 'ieee-p1363' } : known.key, signature);
    } catch {
      ok = false;
    }
    if (!ok) throw unauthorized('access token signature is invalid');

    const now = Math.floor(Date.now() / 1000);
    const skew = this.options.clockToleranceS ?? 5;
    if (claims.iss !== this.options.issuer) throw unauthorized('access token has another issuer');
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(this.options.audience)) throw unauthorized('access token was issued for another resource');
    if (typeof claims.exp !== 'number' || claims.exp + skew <= now) throw unauthorized('access token has expired');
    if (typeof claims.nbf === 'number' && claims.nbf - skew > now) throw unauthorized('access token is not valid yet');
    const stk = claims.stk as Partial<AccessTokenStackClaims> | undefined;
    if (typeof claims.sub !== 'string' || typeof claims.client_id !== 'string' || typeof claims.jti !== 'string' || !stk || typeof stk.operator_id !== 'string' || typeof stk.member_id !== 'string' || typeof stk.grant_id !== 'string') {
      throw unauthorized('access token lacks STACK claims');
    }
    return {
      jti: claims.jti,
      sub: claims.sub,
      client_id: claims.client_id,
      scopes: typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [],
      aud: this.options.audience,
      iat: typeof claims.iat === 'number' ? claims.iat : 0,
      exp: claims.exp,
      stk: { operator_id: stk.operator_id, member_id: stk.member_id, grant_id: stk.grant_id },
    };
  }

  private async keyFor(kid: string): Promise<KnownKey | undefined> {
    const known = this.keys.get(kid);
    if (known) return known;
    const minGap = this.options.minRefetchMs ?? 30_000;
    if (this.keys.size === 0 || Date.now() - this.lastFetch >= minGap) {
      this.fetching ??= this.refresh().finally(() => {
        this.fetching = undefined;
      });
      await this.fetching;
    }
    return this.keys.get(kid);
  }

  private async refresh(): Promise<void> {
    this.lastFetch = Date.now();
    let jwks: JsonWebKey[];
    if (this.options.loadKeys) {
      jwks = await this.options.loadKeys();
    } else {
      const url = this.options.jwksUrl ?? `${this.options.issuer}${OAUTH_JWKS_PATH}`;
      const res = await (this.options.fetchImpl ?? fetch)(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new StackError('SERVICE_UNAVAILABLE', `access token keys could not be fetched (HTTP ${res.status})`);
      const body = (await res.json()) as { keys?: JsonWebKey[] };
      jwks = Array.isArray(body.keys) ? body.keys : [];
    }
    const next = new Map<string, KnownKey>();
    for (const jwk of jwks) {
      if (typeof jwk.kid !== 'string' || (jwk.use && jwk.use !== 'sig')) continue;
      try {
        const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as JsonWebKey, format: 'jwk' });
        next.set(jwk.kid, typeof jwk.alg === 'string' ? { key, alg: jwk.alg } : { key });
      } catch {
        // A key this verifier cannot use is skipped, not fatal.
      }
    }
    this.keys = next;
  }
}
