/**
 * The catalog an operator sees: the built-in entries (base URLs overridden by
 * STACK_SERVICE_BASE_URLS, which then become their only allowed host, OAuth endpoints moving
 * along) and the operator's own
 * custom services. Also the allowed-host check every call passes: an allowed host, the base
 * URL's scheme, and the base URL's port unless the allowed-host entry names another.
 */
import { StackError } from '@stack/contracts';

import type { ConnectionDirectory } from '../connections/connection-directory';
import type { CustomServiceRow } from '../connections/connection.repository';
import { BUILTIN_CATALOG } from './builtin-catalog';
import type { CatalogEntry, InjectionType } from './catalog.types';

export function applyOverrides(entries: readonly CatalogEntry[], overrides: Record<string, string>): CatalogEntry[] {
  return entries.map((e) => {
    const base = overrides[e.service_id];
    if (!base) return e;
    // The provider's OAuth endpoints move to the override's origin with their paths (GitHub
    // Enterprise serves /login/oauth/* beside /api/v3; the tests' fakes do the same).
    const origin = new URL(base).origin;
    const move = (u: string) => `${origin}${new URL(u).pathname}`;
    const oauth = e.oauth ? { ...e.oauth, authorize_url: move(e.oauth.authorize_url), token_url: move(e.oauth.token_url) } : undefined;
    return { ...e, base_url: base, allowed_hosts: [new URL(base).host], ...(oauth ? { oauth } : {}) };
  });
}

export function customEntry(row: CustomServiceRow): CatalogEntry {
  return {
    service_id: row.service_id,
    name: row.name,
    base_url: row.base_url,
    auth: { type: row.auth_type as InjectionType, ...(row.auth_name ? { name: row.auth_name } : {}) },
    allowed_hosts: row.allowed_hosts.length ? row.allowed_hosts : [new URL(row.base_url).host],
    scopes: ['read', 'write'],
    scope_rules: [],
    credential_kinds: row.auth_type === 'basic' ? ['basic'] : ['token', 'value'],
    builtin: false,
  };
}

/** Where a call goes: scheme, host as in a URL (name plus a non-default port) and effective port. */
export interface Target {
  protocol: string;
  host: string;
  port: number;
}

/** A URL's port, or its scheme's default. */
export function portOf(u: Pick<URL, 'protocol' | 'port'>): number {
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}

export function targetOf(u: URL): Target {
  return { protocol: u.protocol, host: u.host, port: portOf(u) };
}

/** `name` or `[v6]`, and a port when the entry names one. */
function splitHost(host: string): { name: string; port?: number } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(host.toLowerCase());
  if (!m) return { name: host.toLowerCase() };
  return m[2] === undefined ? { name: m[1]! } : { name: m[1]!, port: Number(m[2]) };
}

/**
 * `api.github.com`, `*.atlassian.net` (any subdomain, not the apex) or `*` (any host and port:
 * custom services only). An entry without a port allows `basePort` only (the base URL's effective
 * port); `host:port` allows that port. `port` undefined: the name alone is checked.
 */
export function hostAllowed(allowed: readonly string[], host: string, port: number | undefined, basePort: number): boolean {
  const name = splitHost(host).name;
  return allowed.some((pattern) => {
    if (pattern === '*') return true;
    const p = splitHost(pattern);
    const named = p.name.startsWith('*.') ? name.endsWith(p.name.slice(1)) && name.length > p.name.length - 1 : p.name === name;
    return named && (port === undefined || port === (p.port ?? basePort));
  });
}

/**
 * A built-in entry whose hosts are a wildcard (Jira Cloud: `*.atlassian.net`) names which sites a
 * connection may be made for, not one the catalog can call: each connection gives its own site
 * as `base_url`. (With STACK_SERVICE_BASE_URLS the override is the one host, and no site is asked.)
 */
export function siteRequired(entry: CatalogEntry): boolean {
  return entry.builtin && entry.allowed_hosts.some((h) => h.includes('*'));
}

/**
 * The hosts one connection's calls may reach. A built-in wildcard is dropped: a Jira connection
 * reaches its own site only, so its credential never goes to another tenant's site on the same
 * domain (and one without a site reaches none). A custom service keeps what its admin allowed.
 */
export function connectionHosts(entry: CatalogEntry, connBase: URL | undefined): CatalogEntry {
  if (!connBase && !siteRequired(entry)) return entry;
  const hosts = entry.builtin ? entry.allowed_hosts.filter((h) => !h.includes('*')) : [...entry.allowed_hosts];
  if (connBase) hosts.push(connBase.host);
  return { ...entry, allowed_hosts: hosts };
}

/**
 * The credential goes only to an allowed host, over the base URL's scheme (no `http:` downgrade
 * of an `https:` service), on the base URL's port or one an allowed-host entry names.
 */
export function enforceAllowedHost(entry: CatalogEntry, base: URL, target: Target): void {
  const basePort = portOf(base);
  if (!hostAllowed(entry.allowed_hosts, target.host, undefined, basePort)) throw new StackError('FORBIDDEN', `the host '${target.host}' is not one of ${entry.name}'s allowed hosts`, { reason: 'host_not_allowed', host: target.host });
  if (target.protocol !== base.protocol) {
    throw new StackError('FORBIDDEN', `the url's scheme ${target.protocol} is not ${entry.name}'s base URL scheme (${base.protocol}): the credential is sent over that scheme only`, { reason: 'scheme_not_allowed', scheme: target.protocol.slice(0, -1) });
  }
  if (!hostAllowed(entry.allowed_hosts, target.host, target.port, basePort)) {
    throw new StackError('FORBIDDEN', `port ${target.port} is not ${entry.name}'s base URL port (${basePort}) nor named by an allowed host`, { reason: 'port_not_allowed', host: target.host, port: target.port });
  }
}

export class Catalog {
  readonly builtins: readonly CatalogEntry[];

  constructor(
    private readonly directory: Pick<ConnectionDirectory, 'rows'>,
    overrides: Record<string, string>,
  ) {
    this.builtins = applyOverrides(BUILTIN_CATALOG, overrides);
  }

  builtin(serviceId: string): CatalogEntry | undefined {
    return this.builtins.find((e) => e.service_id === serviceId);
  }

  async find(operatorId: string, serviceId: string): Promise<CatalogEntry | undefined> {
    return this.builtin(serviceId) ?? this.findIn((await this.directory.rows(operatorId)).services, serviceId);
  }

  /** As `find`, among custom services the caller already holds (one directory read). */
  findIn(services: readonly CustomServiceRow[], serviceId: string): CatalogEntry | undefined {
    const b = this.builtin(serviceId);
    if (b) return b;
    const row = services.find((s) => s.service_id === serviceId);
    return row ? customEntry(row) : undefined;
  }

  /** The built-in services and the custom ones the caller already holds. */
  listIn(services: readonly CustomServiceRow[]): CatalogEntry[] {
    return [...this.builtins, ...services.map(customEntry)];
  }
}
