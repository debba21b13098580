/**
 * Which service owns which public path (DESIGN.md §1). The Kubernetes Ingress, the
 * HTTPRoute, the test harness's reverse proxy and the one-process router all read this
 * table, so a path cannot be routed one way in tests and another in production.
 */
import type { ServiceName } from './services';

export interface PublicRoute {
  /** Path prefix (matches the path itself and anything below it), or the exact path when `exact`. */
  path: string;
  exact?: boolean;
  service: ServiceName;
}

/** Most specific first: the first match wins. */
export const PUBLIC_ROUTES: readonly PublicRoute[] = [
  { path: '/.well-known/oauth-protected-resource', service: 'mcp-gateway' },
  { path: '/.well-known/oauth-authorization-server', service: 'auth' },
  { path: '/.well-known/openid-configuration', service: 'auth' },
  { path: '/mcp', service: 'mcp-gateway' },
  { path: '/oauth', service: 'auth' },
  { path: '/login', service: 'auth' },
  { path: '/consent', service: 'auth' },
  { path: '/v1/team', service: 'auth' },
  { path: '/v1/api-keys', service: 'auth' },
  { path: '/v1/openapi.json', exact: true, service: 'mcp-gateway' },
  { path: '/v1/.well-known/jwks.json', exact: true, service: 'passport' },
  { path: '/v1/agents', service: 'passport' },
  { path: '/v1/passports', service: 'passport' },
  { path: '/v1/dropoffs', service: 'passport' },
  { path: '/v1/services', service: 'credential-proxy' },
  { path: '/v1/connections', service: 'credential-proxy' },
  { path: '/v1/proxy', service: 'credential-proxy' },
  { path: '/v1/skills', service: 'skill-runner' },
  { path: '/v1/audit', service: 'audit' },
];

/** The service that owns `pathname`, or undefined when no public route matches. */
export function routeFor(pathname: string): PublicRoute | undefined {
  return PUBLIC_ROUTES.find((r) => (r.exact ? pathname === r.path : pathname === r.path || pathname.startsWith(r.path.endsWith('/') ? r.path : `${r.path}/`)));
}
