/**
 * Who is calling /mcp, once their bearer token is verified: the caller context the gateway
 * signs onto every bus request, the scopes that decide which tools they see and may call,
 * and the keys their rate limits are counted under.
 */
import type { CallerContext } from '@stack/contracts';

export interface Principal {
  /** What kind of credential was presented. */
  credential: 'oauth' | 'api_key' | 'passport' | (string & {});
  caller: CallerContext;
  /** Rate-limit buckets this principal draws from (member and agent). */
  rateKeys: string[];
}

/**
 * Verifies one kind of bearer token. Each credential type STACK accepts (OAuth access token,
 * API key, passport) has one; the gateway asks the first whose `accepts` matches.
 */
export interface TokenVerifier {
  readonly name: string;
  accepts(token: string): boolean;
  /** Resolves the principal, or throws StackError (UNAUTHORIZED, PASSPORT_EXPIRED, PASSPORT_REVOKED, REVOCATION_STATE_STALE). */
  verify(token: string): Promise<Principal>;
}

export const TOKEN_VERIFIERS = Symbol.for('stack.mcp-gateway.token-verifiers');

/** The JOSE `typ` of a compact JWS, without verifying anything (to pick a verifier). */
export function jwtType(token: string): string | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as { typ?: unknown };
    return typeof header.typ === 'string' ? header.typ.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}
