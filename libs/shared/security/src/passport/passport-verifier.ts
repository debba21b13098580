/**
 * Checks a passport wherever one is presented (DESIGN.md §3, §5): signature (Ed25519 over
 * node:crypto), `typ`, `alg`, `aud`, `iss`, expiry, the claims' shape, and — on every use —
 * the node's live revocation state. What was verified is cached until `exp`, found by the token's
 * signature segment (86 characters: a map key hashed in a fraction of the time a whole 1–2 kB
 * token takes, and a new string each request) and then compared with the whole token, so only the
 * very bytes that were checked hit. A passport presented again costs a map lookup and a string
 * comparison instead of a signature check; revocation is consulted every time all the same.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';

import { TypeCompiler } from '@sinclair/typebox/compiler';

import { PASSPORT_ALG, PASSPORT_TYP, PassportClaimsSchema, StackError, type PassportClaims } from '@stack/contracts';

import { isCompactJws } from '../compact-jws';
import type { CredentialSubject } from '../revocation/revocation-set';
import type { RevocationState } from '../revocation/revocation-state';

const claimsCheck = TypeCompiler.Compile(PassportClaimsSchema);

/** Finds the public key of a `kid` (may fetch the JWKS once on an unknown kid). */
export type PassportKeyResolver = (kid: string) => KeyObject | undefined | Promise<KeyObject | undefined>;

export interface PassportVerifierOptions {
  /** STACK_PUBLIC_URL: the passport's `aud`. */
  audience: string;
  /** Expected `iss`; default the audience. */
  issuer?: string;
  keys: PassportKeyResolver;
  /** The node's revocation state; without it `verify` checks no revocation (tests, offline tools). */
  revocations?: Pick<RevocationState, 'check' | 'revocationOf' | 'assertFresh'>;
  now?: () => number;
  /** Largest number of cached verified tokens (default 20 000; a passport is about 1 KB). */
  cacheLimit?: number;
}

export interface VerifiedPassport {
  claims: PassportClaims;
  /** What the revocation predicates and the in-flight registry look at. */
  subject: CredentialSubject;
  expiresAtMs: number;
}

export function subjectOfPassport(claims: PassportClaims): CredentialSubject {
  return {
    jti: claims.jti,
    chain: claims.stk.chain,
    operator_id: claims.stk.operator_id,
    agent_id: claims.stk.agent_id,
    session_id: claims.stk.session_id,
    member_id: claims.stk.member_id,
    issued_at_ms: claims.stk.issued_at_ms,
  };
}

/** The cache key of a token: its signature segment (what follows the last dot). */
function cacheKey(token: string): string {
  return token.slice(token.lastIndexOf('.') + 1);
}

export class PassportVerifier {
  /** Signature segment → the token checked and what it verified to. */
  private readonly cache = new Map<string, { token: string; verified: VerifiedPassport }>();
  private readonly audience: string;
  private readonly issuer: string;
  private readonly keys: PassportKeyResolver;
  private readonly revocations?: PassportVerifierOptions['revocations'];
  private readonly now: () => number;
  private readonly cacheLimit: number;

  constructor(options: PassportVerifierOptions) {
    this.audience = options.audience;
    this.issuer = options.issuer ?? options.audience;
    this.keys = options.keys;
    this.revocations = options.revocations;
    this.now = options.now ?? Date.now;
    this.cacheLimit = options.cacheLimit ?? 20_000;
  }

  /** Valid, unexpired, not revoked and checked by a fresh node — or a StackError: UNAUTHORIZED, PASSPORT_EXPIRED, PASSPORT_REVOKED, REVOCATION_STATE_STALE. */
  verify(token: string): Promise<VerifiedPassport> {
    try {
      const hit = this.cached(token);
      if (hit) {
        this.revocations?.check(hit.subject);
        return Promise.resolve(hit);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.verifyAndRemember(token).then((verified) => {
      this.revocations?.check(verified.subject);
      return verified;
    });
  }

  /** Signature, header, audience, issuer, shape and expiry — no revocation. Cached until `exp`. */
  async authenticate(token: string): Promise<VerifiedPassport> {
    return this.cached(token) ?? this.verifyAndRemember(token);
  }

  /** A token not in the cache: checked in full, then remembered. */
  private async verifyAndRemember(token: string): Promise<VerifiedPassport> {
    const now = this.now();
    const verified = await this.verifyUncached(token, now);
    if (this.cache.size >= this.cacheLimit) this.evict(now);
    this.cache.set(cacheKey(token), { token, verified });
    return verified;
  }

  /** The token's cached verification while unexpired; PASSPORT_EXPIRED (and forgotten) once past `exp`. */
  private cached(token: string): VerifiedPassport | undefined {
    const key = cacheKey(token);
    const entry = this.cache.get(key);
    // Another token with the same last segment is not this one: it is checked in full.
    if (!entry || entry.token !== token) return undefined;
    const hit = entry.verified;
    if (hit.expiresAtMs > this.now()) return hit;
    this.cache.delete(key);
    throw new StackError('PASSPORT_EXPIRED', 'the passport has expired', { expired_at: new Date(hit.expiresAtMs).toISOString() });
  }

  /** Forgets every cached token (after a key is withdrawn, say). */
  clear(): void {
    this.cache.clear();
  }

  private async verifyUncached(token: string, now: number): Promise<VerifiedPassport> {
    if (typeof token !== 'string' || token.length > 16_384) throw unauthorized('the passport is malformed');
    if (!isCompactJws(token)) throw unauthorized('the passport is not a compact JWS');
    const first = token.indexOf('.');
    const second = token.indexOf('.', first + 1);
    const header = parseSegment(token.slice(0, first)) as { alg?: unknown; typ?: unknown; kid?: unknown } | undefined;
    if (!header || header.alg !== PASSPORT_ALG || header.typ !== PASSPORT_TYP || typeof header.kid !== 'string') throw unauthorized(`the token is not a passport (typ ${PASSPORT_TYP}, alg ${PASSPORT_ALG})`);
    const publicKey = await this.keys(header.kid);
    if (!publicKey) throw unauthorized('the passport was signed with an unknown key');
    const signatureSegment = token.slice(second + 1);
    const signature = Buffer.from(signatureSegment, 'base64url');
    // Canonical encoding only: the decoder ignores the spare low bits of the last character, so 16 spellings of one signature would all verify.
    if (signature.length !== 64 || signature.toString('base64url') !== signatureSegment || !cryptoVerify(null, Buffer.from(token.slice(0, second)), publicKey, signature)) throw unauthorized('the passport signature is invalid');
    const claims = parseSegment(token.slice(first + 1, second));
    if (!claimsCheck.Check(claims)) throw unauthorized('the passport claims are malformed');
    if (claims.aud !== this.audience) throw unauthorized('the passport was issued for another audience');
    if (claims.iss !== this.issuer) throw unauthorized('the passport was issued by another issuer');
    if (claims.sub !== claims.stk.agent_id || claims.stk.chain.length !== claims.stk.delegation_depth) throw unauthorized('the passport claims are inconsistent');
    const expiresAtMs = claims.exp * 1000;
    if (expiresAtMs <= now) throw new StackError('PASSPORT_EXPIRED', 'the passport has expired', { expired_at: new Date(expiresAtMs).toISOString() });
    return { claims, subject: subjectOfPassport(claims), expiresAtMs };
  }

  private evict(now: number): void {
    for (const [k, v] of this.cache) if (v.verified.expiresAtMs <= now) this.cache.delete(k);
    if (this.cache.size >= this.cacheLimit) this.cache.clear();
  }
}

function unauthorized(message: string): StackError {
  return new StackError('UNAUTHORIZED', message);
}

function parseSegment(segment: string): unknown {
  try {
    return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}
