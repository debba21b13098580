/**
 * What the credential proxy's unit specs share: a built-in-like catalog entry on a test host, the
 * connection table in memory, and a vault whose logger writes to memory through a redactor (to
 * see which secrets a log line still carries).
 */
import { randomBytes } from 'node:crypto';

import { createLogger, MemoryLogDestination, SecretRedactor, type StackLogger, type StackLogLevel } from '@stack/observability';

import type { CatalogEntry } from '../catalog/catalog.types';
import type { ConnectionRow } from '../connections/connection.repository';
import { CredentialVault } from '../vault/credential-vault';

/** GitHub on `api.github.test`, a bearer token; `overrides` for an OAuth entry and the like. */
export function testGithubEntry(overrides: Partial<CatalogEntry> = {}): CatalogEntry {
  return {
    service_id: 'github',
    name: 'GitHub',
    base_url: 'https://api.github.test',
    auth: { type: 'bearer' },
    allowed_hosts: ['api.github.test'],
    scopes: ['read', 'write'],
    scope_rules: [],
    credential_kinds: ['token'],
    builtin: true,
    ...overrides,
  };
}

/** The connection table in memory: what the connections service and the OAuth manager call. */
export class MemoryConnectionRepo {
  readonly rows = new Map<string, ConnectionRow>();
  /** Every status set, in order. */
  readonly statuses: string[] = [];

  async findByName(op: string, serviceId: string, name: string): Promise<ConnectionRow | undefined> {
    return [...this.rows.values()].find((r) => r.operator_id === op && r.service_id === serviceId && r.name === name);
  }
  async insert(c: Omit<ConnectionRow, 'created_at' | 'updated_at' | 'verified_at'>): Promise<ConnectionRow> {
    const row: ConnectionRow = { ...c, created_at: new Date(), updated_at: new Date(), verified_at: null };
    this.rows.set(c.id, row);
    return row;
  }
  async find(op: string, id: string): Promise<ConnectionRow | undefined> {
    const row = this.rows.get(id);
    return row?.operator_id === op ? row : undefined;
  }
  async delete(op: string, id: string): Promise<boolean> {
    return (await this.find(op, id)) !== undefined && this.rows.delete(id);
  }
  async setStatus(_op: string, id: string, status: ConnectionRow['status']): Promise<void> {
    this.statuses.push(status);
    this.rows.set(id, { ...this.rows.get(id)!, status });
  }
  async replaceSecret(_op: string, id: string, secret: ConnectionRow['secret'], expiresAt: Date | null, changes: { scopes?: readonly string[] } = {}): Promise<boolean> {
    const row = this.rows.get(id);
    if (!row) return false;
    this.rows.set(id, { ...row, secret, key_id: secret.kid, expires_at: expiresAt, scopes: changes.scopes ? [...changes.scopes] : row.scopes });
    return true;
  }
}

/** A vault on a fresh key whose logger writes to `out` through `redactor`. */
export function vaultWithMemoryLog(level: StackLogLevel = 'info'): { out: MemoryLogDestination; redactor: SecretRedactor; logger: StackLogger; vault: CredentialVault } {
  const out = new MemoryLogDestination();
  const redactor = new SecretRedactor();
  const logger = createLogger({ level, service: 'credential-proxy', instance: 'node-1', destination: out, redactor });
  return { out, redactor, logger, vault: CredentialVault.fromMasterKeys(`k1:${randomBytes(32).toString('base64')}`, logger) };
}
