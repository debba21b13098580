/**
 * Which redirect URIs a client may register: https, or plain http on loopback only (a native
 * MCP client listening on localhost). oidc-provider alone would accept any http URI.
 */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]';
}

/** Why a registered redirect URI is refused, or undefined when it is acceptable. */
export function redirectUriProblem(uri: unknown): string | undefined {
  if (typeof uri !== 'string') return 'redirect_uris must be strings';
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return `redirect URI ${JSON.stringify(uri)} is not a URL`;
  }
  if (url.hash) return 'redirect URIs must not have a fragment';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return undefined;
  return `redirect URI ${JSON.stringify(uri)} must use https (plain http only on localhost or 127.0.0.1)`;
}
