/**
 * Which redirect URIs a client may register (RFC 8252, OAuth for native apps — what MCP clients
 * are): https; plain http on loopback only (a client listening on localhost, §7.3); or a
 * private-use URI scheme the client's app claims (§7.1: `com.example.app:/callback`, and the
 * schemes editors register, such as `cursor://…` or `vscode://…`). oidc-provider alone would
 * accept any http URI. Schemes a browser or the operating system handles itself (script, data,
 * files, plain http elsewhere, mail, telephony, …) are refused, as is a URI carrying credentials
 * or a fragment. PKCE, which every client must use, keeps a code that another app catching the
 * scheme would see useless to it.
 */
function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]';
}

/** Schemes that are not an app's own: the browser or the system acts on them, or they name no app. */
const NOT_AN_APP = new Set([
  'about:', 'blob:', 'chrome:', 'data:', 'file:', 'filesystem:', 'ftp:', 'http:', 'intent:', 'javascript:', 'jar:', 'mailto:',
  'sms:', 'tel:', 'urn:', 'view-source:', 'vbscript:', 'ws:', 'wss:',
]);

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
  if (url.username || url.password) return 'redirect URIs must not carry a user name or password';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopback(url.hostname)) return undefined;
  if (!NOT_AN_APP.has(url.protocol)) return undefined;
  return `redirect URI ${JSON.stringify(uri)} must use https, plain http only on localhost or 127.0.0.1, or an app's own scheme (RFC 8252)`;
}

/** Where a redirect URI returns, as the consent page names it: the host of a web address, the scheme and path of an app's own. */
export function redirectTarget(uri: string): string {
  try {
    const url = new URL(uri);
    if (url.protocol === 'https:' || url.protocol === 'http:') return url.host;
    return `${url.protocol}${url.host ? `//${url.host}` : ''}${url.pathname}`;
  } catch {
    return uri;
  }
}
