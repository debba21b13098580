/**
 * The team routes on the real Postgres: a member limited to some connections (`allowed_connections`)
 * cannot lift that limit through the team routes — not on themselves, not by giving another member
 * more, not by inviting another address of their own.
 */
import type { Request } from 'express';

import { STACK_SCOPES } from '@stack/contracts';
import { createServiceDataSource, migrateUnderLock, type ServiceDataSource } from '@stack/persistence';
import type { ServiceKit } from '@stack/runtime';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { AccountsService } from '../accounts/accounts.service';
import { AuthInit1764200000000 } from '../auth-init.migration';
import type { OidcProviderService } from '../oidc/oidc-provider.service';
import { CallerService } from './caller.service';
import { TeamController } from './team.controller';

// API keys never reach the OIDC provider: leave the provider package unloaded.
jest.mock('../oidc/oidc-provider.service', () => ({ OidcProviderService: class {} }));

const PASSWORD = 'correct horse battery staple 42';

describe('TeamController (real Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;
  let accounts: AccountsService;
  let team: TeamController;
  const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } }) as unknown as Request;

  beforeAll(async () => {
    db = await createTestDatabase('stack_auth_team');
    ds = createServiceDataSource({ service: 'auth', url: db.url, entities: [], migrations: [AuthInit1764200000000], poolSize: 2 });
    await ds.initialize();
    await migrateUnderLock(ds);
    accounts = new AccountsService({ dataSource: ds, config: { authSignup: 'invite-only' } } as unknown as Pick<ServiceKit, 'dataSource' | 'config'>);
    team = new TeamController(accounts, new CallerService(accounts, {} as OidcProviderService), { issuer: 'https://stack.test' } as OidcProviderService);
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it('lets an admin limited to some connections neither lift their own limit, nor give anyone more, nor invite an unlimited member', async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Iota', email: 'owner@iota.test', password: PASSWORD });
    const join = async (email: string, role: 'admin' | 'standard') =>
      accounts.acceptInvitation((await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email, name: email, role })).token, PASSWORD);
    const admin = await join('admin@iota.test', 'admin');
    const dev = await join('dev@iota.test', 'standard');
    await accounts.updateMember(owner.operator_id, admin.id, { allowed_connections: ['scon_a', 'scon_b'] });
    const adminKey = (await accounts.createApiKey((await accounts.findMember(admin.id))!, 'ops', STACK_SCOPES)).key;

    for (const allowed of [null, ['scon_a', 'scon_c']]) {
      await expect(team.update(bearer(adminKey), admin.id, { allowed_connections: allowed })).rejects.toMatchObject({ code: 'FORBIDDEN', details: { reason: 'connections_limited' } });
      await expect(team.update(bearer(adminKey), dev.id, { allowed_connections: allowed })).rejects.toMatchObject({ code: 'FORBIDDEN', details: { reason: 'connections_limited' } });
    }
    await expect(team.invite(bearer(adminKey), { email: 'admin+2@iota.test', name: 'Me again', role: 'admin' })).rejects.toMatchObject({ code: 'FORBIDDEN', details: { reason: 'connections_limited' } });
    expect((await accounts.getMember(owner.operator_id, admin.id)).allowed_connections).toEqual(['scon_a', 'scon_b']);
    expect((await accounts.getMember(owner.operator_id, dev.id)).allowed_connections).toBeNull();

    // Within their own list they still manage others, and may narrow themselves; other changes are untouched.
    expect(await team.update(bearer(adminKey), dev.id, { allowed_connections: ['scon_b'] })).toMatchObject({ allowed_connections: ['scon_b'] });
    expect(await team.update(bearer(adminKey), admin.id, { allowed_connections: ['scon_a'] })).toMatchObject({ allowed_connections: ['scon_a'] });
    expect(await team.update(bearer(adminKey), dev.id, { name: 'Dev' })).toMatchObject({ name: 'Dev' });
    // An unlimited admin (the owner) lifts limits and invites as before.
    const ownerKey = (await accounts.createApiKey((await accounts.findMember(owner.member_id))!, 'root', STACK_SCOPES)).key;
    expect(await team.update(bearer(ownerKey), admin.id, { allowed_connections: null })).toMatchObject({ allowed_connections: null });
    expect(await team.invite(bearer(ownerKey), { email: 'new@iota.test', name: 'New', role: 'standard' })).toMatchObject({ accept_url: expect.stringMatching(/^https:\/\/stack\.test\/login\/accept\?token=/) });
  });
});
