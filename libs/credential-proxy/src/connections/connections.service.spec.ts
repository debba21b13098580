import { randomBytes } from 'node:crypto';

import type { Cache } from '@stack/cache';
import type { CallerContext } from '@stack/contracts';
import { createLogger, REDACTED, SecretRedactor, MemoryLogDestination } from '@stack/observability';

import type { Catalog } from '../catalog/catalog';
import type { CatalogEntry } from '../catalog/catalog.types';
import type { ProxyPipeline } from '../proxy/proxy-pipeline';
import { CredentialVault } from '../vault/credential-vault';
import type { ConnectionDirectory } from './connection-directory';
import type { ConnectionRepository, ConnectionRow } from './connection.repository';
import { ConnectionsService } from './connections.service';

const ENTRY: CatalogEntry = {
  service_id: 'github',
  name: 'GitHub',
  base_url: 'https://api.github.test',
  auth: { type: 'bearer' },
  allowed_hosts: ['api.github.test'],
  scopes: ['read', 'write'],
  scope_rules: [],
  credential_kinds: ['token'],
  builtin: true,
};

/** The connection table in memory: what create and disconnect call. */
class MemoryRepo {
  readonly rows = new Map<string, ConnectionRow>();
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
}

const member: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_a', member_id: 'mem_a', scopes: ['stack:services'] };

function setup() {
  const out = new MemoryLogDestination();
  const redactor = new SecretRedactor();
  const logger = createLogger({ level: 'info', service: 'credential-proxy', instance: 'node-1', destination: out, redactor });
  const vault = CredentialVault.fromMasterKeys(`k1:${randomBytes(32).toString('base64')}`, logger);
  const repo = new MemoryRepo();
  const service = new ConnectionsService({
    repo: repo as unknown as ConnectionRepository,
    directory: {} as Pick<ConnectionDirectory, 'rows'>,
    catalog: { find: async (_op: string, id: string) => (id === ENTRY.service_id ? ENTRY : undefined) } as unknown as Catalog,
    vault,
    cache: {} as Cache,
    pipeline: {} as ProxyPipeline,
    publicUrl: 'https://stack.test',
  });
  return { out, redactor, logger, repo, service };
}

describe('ConnectionsService.disconnect', () => {
  it('takes the connection’s token out of the log redactor; a token another connection holds stays redacted', async () => {
    const { out, redactor, logger, repo, service } = setup();
    const baseline = redactor.size;
    const own = `ghp_${randomBytes(12).toString('hex')}`;
    const shared = `ghp_${randomBytes(12).toString('hex')}`;
    const first = await service.create(member, { service_id: 'github', name: 'first', credential: { token: own } });
    const second = await service.create(member, { service_id: 'github', name: 'second', credential: { token: shared } });
    const third = await service.create(member, { service_id: 'github', name: 'third', credential: { token: shared } });
    expect(redactor.redact(own)).toBe(REDACTED);

    expect(await service.disconnect(member, first.id)).toEqual({ id: first.id, deleted: true });
    expect(await service.disconnect(member, second.id)).toEqual({ id: second.id, deleted: true });
    expect(repo.rows.has(first.id)).toBe(false);
    expect(redactor.redact(`${own} ${shared}`)).toBe(`${own} ${REDACTED}`);
    logger.info(`after ${shared}`);
    expect(out.lines.join('')).toContain(`after ${REDACTED}`);

    await service.disconnect(member, third.id);
    expect(redactor.size).toBe(baseline);
  });
});
