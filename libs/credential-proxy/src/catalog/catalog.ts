/**
 * The catalog an operator sees: the built-in entries (base URLs overridden by
 * STACK_SERVICE_BASE_URLS, which then become their only allowed host, OAuth endpoints moving
 * along) and the operator's own
 * custom services. Also the allowed-host check every call passes.
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

/** `api.github.com`, `*.atlassian.net` (any subdomain, not the apex) or `*` (any host: custom services only). */
export function hostAllowed(allowed: readonly string[], host: string): boolean {
  const h = host.toLowerCase();
  const name = h.replace(/:\d+$/, '');
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase();
    if (p === '*') return true;
    if (p.startsWith('*.')) return name.endsWith(p.slice(1)) && name.length > p.length - 1;
    return p.includes(':') ? p === h : p === name || p === h;
  });
}

export function enforceAllowedHost(entry: CatalogEntry, host: string): void {
  if (!hostAllowed(entry.allowed_hosts, host)) throw new StackError('FORBIDDEN', `the host '${host}' is not one of ${entry.name}'s allowed hosts`, { reason: 'host_not_allowed', host });
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
