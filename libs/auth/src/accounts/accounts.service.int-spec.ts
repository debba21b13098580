/**
 * Accounts on the real Postgres: an API key resolves to the same answer other services get over
 * the bus, auth's own REST gets the key's member with it, a key holds no more than its member's
 * role (then and now) and the credential that made it allow, invitations are accepted once, and a
 * revoked member's keys stop working.
 */
import type { Request } from 'express';

import { STACK_SCOPES } from '@stack/contracts';
import { createServiceDataSource, migrateUnderLock, qualifiedTable, schemaOf, type ServiceDataSource } from '@stack/persistence';
import type { ServiceKit } from '@stack/runtime';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { ApiKeysController } from '../api/api-keys.controller';
import { CallerService } from '../api/caller.service';
import { TeamController } from '../api/team.controller';
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
    const { key, record } = await accounts.createApiKey(member, 'ci', STACK_SCOPES);
    expect(await accounts.resolveApiKey(key)).toEqual({ api_key_id: record.id, operator_id: owner.operator_id, member_id: owner.member_id, role: 'owner', scopes: [...STACK_SCOPES] });
    expect(await callers.authenticate(bearer(key))).toEqual({ member, scopes: [...STACK_SCOPES], via: 'api_key' });
    await expect(accounts.resolveApiKey(`${key.slice(0, -1)}${key.endsWith('x') ? 'y' : 'x'}`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('ends the OAuth grants of a member whose role loses scopes (not of one who gains or keeps them), and the browser sessions of one whose password is reset', async () => {
    const t = (name: string) => qualifiedTable(schemaOf(ds), name);
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Epsilon', email: 'owner@epsilon.test', password: PASSWORD });
    const invitation = await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email: 'admin@epsilon.test', name: 'Admin', role: 'admin' });
    const admin = await accounts.acceptInvitation(invitation.token, PASSWORD);
    // What oidc-provider stores for a member: a grant, a refresh token of it, a browser session.
    const seed = async (tag: string) => {
      await ds.query(`INSERT INTO ${t('oidc_payloads')} (model, id, payload) VALUES ('Grant', $1, $2::jsonb)`, [`grant-${tag}`, JSON.stringify({ accountId: admin.id })]);
      await ds.query(`INSERT INTO ${t('oidc_payloads')} (model, id, payload, grant_id) VALUES ('RefreshToken', $1, '{}'::jsonb, $2)`, [`rt-${tag}`, `grant-${tag}`]);
      await ds.query(`INSERT INTO ${t('oidc_payloads')} (model, id, payload) VALUES ('Session', $1, $2::jsonb)`, [`session-${tag}`, JSON.stringify({ accountId: admin.id })]);
    };
    const left = async () => ((await ds.query(`SELECT model, id FROM ${t('oidc_payloads')} ORDER BY model, id`)) as { model: string; id: string }[]).map((r) => `${r.model}:${r.id}`);
    const grantRevocations = async () => ((await ds.query(`SELECT payload->>'value' AS v FROM ${t('outbox')} WHERE payload->>'kind' = 'grant' ORDER BY seq`)) as { v: string }[]).map((r) => r.v);
    await seed('a');
    await accounts.updateMember(owner.operator_id, admin.id, { name: 'Renamed' });
    await accounts.updateMember(owner.operator_id, admin.id, { role: 'owner' });
    expect(await left()).toEqual(['Grant:grant-a', 'RefreshToken:rt-a', 'Session:session-a']);
    // owner → standard loses stack:admin: the grant and its tokens go, with a revocation record; the session stays.
    await accounts.updateMember(owner.operator_id, admin.id, { role: 'standard' });
    expect(await left()).toEqual(['Session:session-a']);
    expect(await grantRevocations()).toEqual(['grant-a']);
    // standard → readonly keeps every scope (only the role's own checks change): nothing ends.
    await seed('b');
    await accounts.updateMember(owner.operator_id, admin.id, { role: 'readonly' });
    expect(await left()).toEqual(['Grant:grant-b', 'RefreshToken:rt-b', 'Session:session-a', 'Session:session-b']);
    // A password reset signs the member out of every browser; grants and keys are separate credentials.
    const reset = await accounts.createPasswordReset(owner.operator_id, admin.id);
    await accounts.resetPassword(reset.token, `${PASSWORD} changed`);
    expect(await left()).toEqual(['Grant:grant-b', 'RefreshToken:rt-b']);
  });

  it("answers a member's allowed_connections (auth.resolve_member_access): absent when not limited, NOT_FOUND outside the operator or once revoked", async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Zeta', email: 'owner@zeta.test', password: PASSWORD });
    const other = await accounts.createOperatorWithOwner({ operatorName: 'Eta', email: 'owner@eta.test', password: PASSWORD });
    const invitation = await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email: 'dev@zeta.test', name: 'Dev', role: 'standard' });
    const dev = await accounts.acceptInvitation(invitation.token, PASSWORD);
    expect(await accounts.memberAccess(owner.operator_id, dev.id)).toEqual({ member_id: dev.id });
    await accounts.updateMember(owner.operator_id, dev.id, { allowed_connections: ['scon_a', 'scon_b'] });
    expect(await accounts.memberAccess(owner.operator_id, dev.id)).toEqual({ member_id: dev.id, allowed_connections: ['scon_a', 'scon_b'] });
    await expect(accounts.memberAccess(other.operator_id, dev.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await accounts.revokeMember(owner.operator_id, dev.id, owner.member_id);
    await expect(accounts.memberAccess(owner.operator_id, dev.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it("accepts an invitation once, and refuses a revoked member's API keys", async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Beta', email: 'owner@beta.test', password: PASSWORD });
    const invitation = await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email: 'new@beta.test', name: 'New', role: 'standard' });
    const joined = await accounts.acceptInvitation(invitation.token, PASSWORD);
    expect(joined).toMatchObject({ operator_id: owner.operator_id, email: 'new@beta.test', name: 'New', role: 'standard', status: 'active' });
    await expect(accounts.acceptInvitation(invitation.token, PASSWORD)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const { key } = await accounts.createApiKey(joined, 'laptop', STACK_SCOPES);
    expect((await callers.authenticate(bearer(key))).member).toEqual(joined);
    await accounts.revokeMember(owner.operator_id, joined.id, owner.member_id);
    await expect(accounts.resolveApiKey(key)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(callers.authenticate(bearer(key))).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: 'API key is unknown or revoked' });
  });

  it('revokes one API key with one api_key revocation through the outbox (for every node), none for a second revoke or a key out of reach', async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Kappa', email: 'owner@kappa.test', password: PASSWORD });
    const member = (await accounts.findMember(owner.member_id))!;
    const { key, record } = await accounts.createApiKey(member, 'ci', STACK_SCOPES);
    const { key: kept } = await accounts.createApiKey(member, 'laptop', STACK_SCOPES);
    const other = await accounts.createOperatorWithOwner({ operatorName: 'Lambda', email: 'owner@lambda.test', password: PASSWORD });
    await expect(accounts.revokeApiKey((await accounts.findMember(other.member_id))!, record.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const before = Date.now();
    await accounts.revokeApiKey(member, record.id);
    await accounts.revokeApiKey(member, record.id);
    await expect(accounts.resolveApiKey(key)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await accounts.resolveApiKey(kept)).member_id).toBe(owner.member_id);
    const events = (await ds.query(`SELECT payload FROM ${qualifiedTable(schemaOf(ds), 'outbox')} WHERE event = 'revocation.recorded' AND payload->>'value' = $1`, [record.id])) as {
      payload: { kind: string; operator_id: string; revoked_at_ms: number; expires_at_ms: number };
    }[];
    expect(events).toHaveLength(1);
    const e = events[0]!.payload;
    expect(e).toMatchObject({ kind: 'api_key', operator_id: owner.operator_id, reason: 'API key revoked' });
    expect(e.revoked_at_ms).toBeGreaterThanOrEqual(before);
    // Alive on every node while one could still hold the key's answer in its cache (30 s), with room.
    expect(e.expires_at_ms - e.revoked_at_ms).toBeGreaterThan(30_000);
  });

  it("gives a key the scopes the member's role allows and the creating credential holds, and only what the role allows now", async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Gamma', email: 'owner@gamma.test', password: PASSWORD });
    const join = async (email: string, role: 'admin' | 'standard') =>
      accounts.acceptInvitation((await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email, name: email, role })).token, PASSWORD);
    const standard = await join('dev@gamma.test', 'standard');
    const nonAdmin = STACK_SCOPES.filter((s) => s !== 'stack:admin');
    // A standard member never gets stack:admin, whatever made the key.
    const all = await accounts.createApiKey(standard, 'all', STACK_SCOPES);
    expect(all.record.scopes).toEqual(nonAdmin);
    expect((await accounts.resolveApiKey(all.key)).scopes).toEqual(nonAdmin);
    // Never more than the creating credential.
    const narrow = await accounts.createApiKey(standard, 'narrow', ['stack:services', 'stack:admin', 'openid']);
    expect(narrow.record.scopes).toEqual(['stack:services']);
    expect((await callers.authenticate(bearer(narrow.key))).scopes).toEqual(['stack:services']);
    await expect(accounts.createApiKey(standard, 'none', ['stack:admin'])).rejects.toMatchObject({ code: 'OUT_OF_SCOPE' });

    // An admin demoted to standard loses stack:admin on the keys they already have.
    const admin = await join('admin@gamma.test', 'admin');
    const adminKey = await accounts.createApiKey(admin, 'ops', STACK_SCOPES);
    const adminOnly = await accounts.createApiKey(admin, 'admin-only', ['stack:admin']);
    expect((await accounts.resolveApiKey(adminKey.key)).scopes).toEqual([...STACK_SCOPES]);
    expect((await callers.authenticate(bearer(adminOnly.key))).scopes).toEqual(['stack:admin']);
    await accounts.updateMember(owner.operator_id, admin.id, { role: 'standard' });
    expect(await accounts.resolveApiKey(adminKey.key)).toMatchObject({ role: 'standard', scopes: nonAdmin });
    expect((await callers.authenticate(bearer(adminKey.key))).scopes).toEqual(nonAdmin);
    // A key left with no scope is refused, never read as unrestricted.
    await expect(accounts.resolveApiKey(adminOnly.key)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(callers.authenticate(bearer(adminOnly.key))).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    // Promoted back, the key acts with stack:admin again.
    await accounts.updateMember(owner.operator_id, admin.id, { role: 'admin' });
    expect((await accounts.resolveApiKey(adminOnly.key)).scopes).toEqual(['stack:admin']);
  });

  it("lets no admin reset an owner's password, revoke or change an owner (an owner may)", async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Theta', email: 'owner@theta.test', password: PASSWORD });
    const join = async (email: string, role: 'admin' | 'standard') =>
      accounts.acceptInvitation((await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.member_id, email, name: email, role })).token, PASSWORD);
    const admin = await join('admin@theta.test', 'admin');
    const second = await join('second@theta.test', 'admin');
    await accounts.updateMember(owner.operator_id, second.id, { role: 'owner' });
    const team = new TeamController(accounts, callers, { issuer: 'https://stack.test' } as OidcProviderService);
    const adminKey = (await accounts.createApiKey(admin, 'ops', STACK_SCOPES)).key;
    await expect(team.passwordReset(bearer(adminKey), owner.member_id)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(team.update(bearer(adminKey), second.id, { role: 'readonly' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(team.revoke(bearer(adminKey), second.id)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect((await accounts.getMember(owner.operator_id, second.id)).role).toBe('owner');
    // An admin still manages the others; an owner manages owners.
    expect((await team.passwordReset(bearer(adminKey), admin.id)).reset_url).toMatch(/^https:\/\/stack\.test\/login\/reset\?token=/);
    const ownerKey = (await accounts.createApiKey((await accounts.findMember(owner.member_id))!, 'root', STACK_SCOPES)).key;
    expect((await team.passwordReset(bearer(ownerKey), second.id)).reset_url).toEqual(expect.any(String));
    expect(await team.update(bearer(ownerKey), second.id, { role: 'admin' })).toMatchObject({ role: 'admin' });
  });

  it('makes POST /v1/api-keys give a key no more than the calling token or key holds', async () => {
    const owner = await accounts.createOperatorWithOwner({ operatorName: 'Delta', email: 'owner@delta.test', password: PASSWORD });
    await ds.query(`INSERT INTO auth.oidc_payloads (model, id, payload) VALUES ('Grant', 'grant_delta', '{}')`);
    // An access token for the REST API approved for stack:services only (the owner could have had stack:admin).
    const oidc = {
      verifyApiToken: async () => ({ jti: 'j1', sub: owner.member_id, client_id: 'c1', scopes: ['stack:services'], aud: 'x', iat: 0, exp: 0, stk: { operator_id: owner.operator_id, member_id: owner.member_id, grant_id: 'grant_delta' } }),
    } as unknown as OidcProviderService;
    const controller = new ApiKeysController(accounts, new CallerService(accounts, oidc));
    const created = await controller.create(bearer('header.payload.signature'), { name: 'from-token' });
    expect(created.scopes).toEqual(['stack:services']);
    expect((await accounts.resolveApiKey(created.key)).scopes).toEqual(['stack:services']);
    // A key made with that key holds no more either.
    const second = await controller.create(bearer(created.key), { name: 'from-key' });
    expect(second.scopes).toEqual(['stack:services']);
  });
});
