/**
 * oidc-provider's storage on the real Postgres: find/consume/expiry, the refresh-token grace
 * window (one replay only, taken by the token's own client's refresh_token grant alone), and a
 * grant revocation that writes exactly one RevocationRecordedEvent to the outbox.
 */
import { createServiceDataSource, migrateUnderLock, type ServiceDataSource } from '@stack/persistence';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { AuthInit1764200000000 } from '../auth-init.migration';
import { AuthRefreshGrace1765200000000 } from '../refresh-grace.migration';
import { PostgresOidcAdapter, REFRESH_GRACE_MS } from './postgres-adapter';

describe('PostgresOidcAdapter (real Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;

  beforeAll(async () => {
    db = await createTestDatabase('stack_auth_adapter');
    ds = createServiceDataSource({ service: 'auth', url: db.url, entities: [], migrations: [AuthInit1764200000000, AuthRefreshGrace1765200000000], poolSize: 2 });
    await ds.initialize();
    await migrateUnderLock(ds);
    await ds.query(`INSERT INTO auth.operators (id, name) VALUES ('op_a', 'A')`);
    await ds.query(`INSERT INTO auth.members (id, operator_id, email, name, role) VALUES ('mem_a', 'op_a', 'a@example.com', 'A', 'owner')`);
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it('stores, finds by id and uid, consumes and hides expired rows', async () => {
    const interactions = new PostgresOidcAdapter('Interaction', ds);
    await interactions.upsert('i1', { uid: 'u1', returnTo: '/x' }, 60);
    expect(await interactions.find('i1')).toEqual({ uid: 'u1', returnTo: '/x' });
    expect(await interactions.findByUid('u1')).toEqual({ uid: 'u1', returnTo: '/x' });
    const codes = new PostgresOidcAdapter('AuthorizationCode', ds);
    await codes.upsert('c1', { grantId: 'g0' }, 60);
    await codes.consume('c1');
    expect((await codes.find('c1'))?.consumed).toEqual(expect.any(Number));
    await ds.query(`UPDATE auth.oidc_payloads SET expires_at = now() - interval '1 second' WHERE id = 'i1'`);
    expect(await interactions.find('i1')).toBeUndefined();
  });

  it('redeems an authorization code once even when two requests read it unconsumed: the second is invalid_grant, and the grant it gave is revoked', async () => {
    const codes = new PostgresOidcAdapter('AuthorizationCode', ds);
    const refresh = new PostgresOidcAdapter('RefreshToken', ds, () => 'c');
    await codes.upsert('c2', { grantId: 'g2', clientId: 'c' }, 60);
    // Both token requests (on two replicas) found the code unconsumed before either consumed it.
    expect((await codes.find('c2'))?.consumed).toBeUndefined();
    expect((await codes.find('c2'))?.consumed).toBeUndefined();
    await codes.consume('c2');
    // The first request's tokens exist by now.
    await refresh.upsert('r2', { grantId: 'g2', accountId: 'mem_a', clientId: 'c' }, 3600);
    await expect(codes.consume('c2')).rejects.toMatchObject({ error: 'invalid_grant', statusCode: 400 });
    expect(await refresh.find('r2')).toBeUndefined();
    // Other models keep consume idempotent (a refresh token's grace handles its own replays).
    await refresh.upsert('r3', { grantId: 'g3', accountId: 'mem_a', clientId: 'c' }, 3600);
    await refresh.consume('r3');
    await expect(refresh.consume('r3')).resolves.toBeUndefined();
  });

  it('lets a just-rotated refresh token be presented again once within the grace window, not twice, not after', async () => {
    const refresh = new PostgresOidcAdapter('RefreshToken', ds, () => 'c');
    await refresh.upsert('r1', { grantId: 'g1', accountId: 'mem_a', clientId: 'c' }, 3600);
    // Reads before it is consumed do not use up the grace.
    expect((await refresh.find('r1'))?.consumed).toBeUndefined();
    expect((await refresh.find('r1'))?.consumed).toBeUndefined();
    await refresh.consume('r1');
    expect((await refresh.find('r1'))?.consumed).toBeUndefined();
    // A second replay within the window is consumed: oidc-provider revokes the grant as reuse.
    expect((await refresh.find('r1'))?.consumed).toEqual(expect.any(Number));
    expect((await refresh.find('r1'))?.consumed).toEqual(expect.any(Number));

    // Concurrent replays (as from several replicas): exactly one reads unconsumed.
    await refresh.upsert('r1c', { grantId: 'g1', accountId: 'mem_a', clientId: 'c' }, 3600);
    await refresh.consume('r1c');
    const reads = await Promise.all([1, 2, 3, 4].map(() => refresh.find('r1c')));
    expect(reads.filter((r) => r && r.consumed === undefined)).toHaveLength(1);

    // After the window, even the first replay is consumed.
    await refresh.upsert('r1x', { grantId: 'g1', accountId: 'mem_a', clientId: 'c' }, 3600);
    await refresh.consume('r1x');
    await ds.query(`UPDATE auth.oidc_payloads SET consumed_at = now() - ($1 || ' milliseconds')::interval WHERE id = 'r1x'`, [String(REFRESH_GRACE_MS + 1000)]);
    expect((await refresh.find('r1x'))?.consumed).toEqual(expect.any(Number));
  });

  it('leaves the grace to the refresh_token grant of the token\'s own client: other lookups read a rotated token consumed', async () => {
    let redeemer: string | undefined;
    const refresh = new PostgresOidcAdapter('RefreshToken', ds, () => redeemer);
    await refresh.upsert('r3', { grantId: 'g3', accountId: 'mem_a', clientId: 'c' }, 3600);
    await refresh.consume('r3');
    // Introspection, revocation (no redeemer) and another client's grant: consumed, as it is.
    for (const who of [undefined, 'other']) {
      redeemer = who;
      expect((await refresh.find('r3'))?.consumed).toEqual(expect.any(Number));
      expect((await refresh.find('r3'))?.consumed).toEqual(expect.any(Number));
    }
    // The client's own resend still has its one grace, and no more.
    redeemer = 'c';
    expect((await refresh.find('r3'))?.consumed).toBeUndefined();
    expect((await refresh.find('r3'))?.consumed).toEqual(expect.any(Number));
  });

  it('revokes a grant with every row of it and records one revocation through the outbox', async () => {
    const grants = new PostgresOidcAdapter('Grant', ds);
    const tokens = new PostgresOidcAdapter('RefreshToken', ds);
    await grants.upsert('g2', { accountId: 'mem_a', clientId: 'c' }, 3600);
    await tokens.upsert('r2', { grantId: 'g2', accountId: 'mem_a' }, 3600);
    // oidc-provider revokes through several models at once, and destroys the grant too.
    await Promise.all([tokens.revokeByGrantId('g2'), new PostgresOidcAdapter('AccessToken', ds).revokeByGrantId('g2'), grants.destroy('g2')]);
    expect(await grants.find('g2')).toBeUndefined();
    expect(await tokens.find('r2')).toBeUndefined();
    const events = (await ds.query(`SELECT payload FROM auth.outbox WHERE event = 'revocation.recorded' AND payload->>'value' = 'g2'`)) as { payload: { kind: string; operator_id: string } }[];
    expect(events).toHaveLength(1);
    expect(events[0]!.payload).toMatchObject({ kind: 'grant', operator_id: 'op_a' });
  });
});
