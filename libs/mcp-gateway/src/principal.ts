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
