/**
 * Auth's side of the public contract beside the scopes (../scopes.ts): member roles, the
 * resource indicators tokens are bound to, and where auth publishes its token keys.
 */
import { STACK_SCOPES, type StackScope } from '../scopes';

/** Member roles, strongest first. */
export const MEMBER_ROLES = ['owner', 'admin', 'standard', 'readonly'] as const;
export type MemberRole = (typeof MEMBER_ROLES)[number];

export function isMemberRole(value: unknown): value is MemberRole {
  return typeof value === 'string' && (MEMBER_ROLES as readonly string[]).includes(value);
}

/**
 * The STACK scopes a member's role allows any credential of theirs to hold (consent, API keys):
 * every one, stack:admin only for an owner or admin.
 */
export function scopesOfRole(role: MemberRole): StackScope[] {
  return STACK_SCOPES.filter((s) => s !== 'stack:admin' || role === 'owner' || role === 'admin');
}

/** Resource indicators (RFC 8707): a token is valid only at the resource it was issued for. */
export function mcpResource(publicUrl: string): string {
  return `${publicUrl}/mcp`;
}
export function apiResource(publicUrl: string): string {
  return `${publicUrl}/v1`;
}

/** Where auth publishes the keys that sign its access tokens (RFC 9068). */
export const OAUTH_JWKS_PATH = '/oauth/jwks';

/** The `typ` header of auth's access tokens (RFC 9068). */
export const ACCESS_TOKEN_TYP = 'at+jwt';

/** Claims STACK adds to its access tokens, under `stk` (beside RFC 9068's `sub`, `client_id`, `scope`). */
export interface AccessTokenStackClaims {
  operator_id: string;
  member_id: string;
  grant_id: string;
}
