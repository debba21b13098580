import { randomBytes } from 'node:crypto';

import type { Cache } from '@stack/cache';
import type { CallerContext } from '@stack/contracts';
import { REDACTED } from '@stack/observability';

import type { Catalog } from '../catalog/catalog';
import type { ProxyPipeline } from '../proxy/proxy-pipeline';
import { MemoryConnectionRepo, testGithubEntry, vaultWithMemoryLog } from '../testing/memory-connections';
import type { ConnectionDirectory } from './connection-directory';
import type { ConnectionRepository } from './connection.repository';
import { ConnectionsService } from './connections.service';

const ENTRY = testGithubEntry();

const member: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_a', member_id: 'mem_a', scopes: ['stack:services'] };

function setup() {
  const { out, redactor, logger, vault } = vaultWithMemoryLog();
  const repo = new MemoryConnectionRepo();
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
