/**
 * The shape every JWS STACK verifies must have: three non-empty base64url segments and nothing
 * else. Checked before decoding because Node's base64url decoder skips what it does not know —
 * a trailing space, padding, a newline — so a token spelled with such extras would otherwise
 * verify as the token it spells.
 */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export function isCompactJws(token: string): boolean {
  return COMPACT_JWS.test(token);
}
