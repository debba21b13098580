/**
 * Accounts on the real Postgres: an API key resolves to the same answer other services get over
 * the bus, auth's own REST gets the key's member with it, invitations are accepted once, and a
 * revoked member's keys stop working.
 */
import type { Request } from 'express';

import { STACK_SCOPES } from '@stack/contracts';
import { createServiceDataSource, migrateUnderLock, type ServiceDataSource } from '@stack/persistence';
import type { ServiceKit } from '@stack/runtime';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { CallerService } from '../api/caller.service';
import { AuthInit1764200000000 } from '../auth-init.migration';
import type { OidcProviderService } from '../oidc/oidc-provider.service';
import { AccountsService } from './accounts.service';

// API keys never reach the OIDC provider: leave the provider package unloaded.
jest.mock('../oidc/oidc-provider.service', () => ({ OidcProviderService: class {} }));

const PASSWORD = 'correct horse battery staple 42';

describe('AccountsService (real Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;
  let accounts: AccountsService;
  let callers: CallerService;
  const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } }) as unknown as Request;

  beforeAll(async () => {
    db = await createTestDatabase('stack_auth_accounts');
    ds = createServiceDataSource({ service: 'auth', url: db.url, entities: [], migrations: [AuthInit1764200000000], poolSize: 2 });
    await ds.initialize();
    await migrateUnderLock(ds);
    accounts = new AccountsService({ dataSource: ds, config: { authSignup: 'invite-only' } } as unknown as Pick<ServiceKit, 'dataSource' | 'config'>);
    callers = new CallerService(accounts, {} as OidcProviderService);
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it("resolves an API key to the bus answer, and gives auth's REST the key's member with it", async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Alpha', email: 'owner@alpha.test', password: PASSWORD });
    const member = (await accounts.findMember(owner.member_id))!;
    const { key, record } = await accounts.createApiKey(member, 'ci');
    expect(await accounts.resolveApiKey(key)).toEqual({ api_key_id: record.id, operator_id: owner.operator_id, member_id: owner.member_id, role: 'owner', scopes: [...STACK_SCOPES] });
    expect(await callers.authenticate(bearer(key))).toEqual({ member, scopes: [...STACK_SCOPES], via: 'api_key' });
    await expect(accounts.resolveApiKey(`${key.slice(0, -1)}x`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it("accepts an invitation once, and refuses a revoked member's API keys", async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Beta', email: 'owner@beta.test', password: PASSWORD });
    const invitation = await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email: 'new@beta.test', name: 'New', role: 'standard' });
    const joined = await accounts.acceptInvitation(invitation.token, PASSWORD);
    expect(joined).toMatchObject({ operator_id: owner.operator_id, email: 'new@beta.test', name: 'New', role: 'standard', status: 'active' });
    await expect(accounts.acceptInvitation(invitation.token, PASSWORD)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const { key } = await accounts.createApiKey(joined, 'laptop');
    expect((await callers.authenticate(bearer(key))).member).toEqual(joined);
    await accounts.revokeMember(owner.operator_id, joined.id, owner.member_id);
    await expect(accounts.resolveApiKey(key)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(callers.authenticate(bearer(key))).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: 'API key is unknown or revoked' });
  });
});
