/**
 * ConnectionRepository against the real Postgres: the writes whose conditions the SQL decides.
 */
import { randomBytes } from 'node:crypto';

import { createServiceDataSource, migrateUnderLock, type ServiceDataSource } from '@stack/persistence';
import { EnvelopeCipher, Keyring } from '@stack/security';
import { createTestDatabase, type TestDatabase } from '@stack/testing';

import { ConnectionRepository } from './connection.repository';
import { CredentialProxyInit1764400000000 } from './credential-proxy-init.migration';

describe('ConnectionRepository (real Postgres)', () => {
  let db: TestDatabase;
  let ds: ServiceDataSource;
  const cipher = new EnvelopeCipher(Keyring.parse(`k1:${randomBytes(32).toString('base64')}`));

  beforeAll(async () => {
    db = await createTestDatabase('stack_cp_repo');
    ds = createServiceDataSource({ service: 'credential-proxy', url: db.url, entities: [], migrations: [CredentialProxyInit1764400000000], poolSize: 2 });
    await ds.initialize();
    await migrateUnderLock(ds);
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it('setStatus with ifSecretCt marks the row only while it still holds that secret, and says whether it did', async () => {
    const repo = new ConnectionRepository(ds);
    const bind = { operatorId: 'op_a', recordId: 'scon_1' };
    const first = await cipher.seal(bind, 'first-secret');
    await repo.insert({ id: 'scon_1', operator_id: 'op_a', service_id: 'github', name: 'oauth', kind: 'oauth2', status: 'active', secret: first, key_id: first.kid, base_url: null, scopes: [], expires_at: null, created_by: null });
    // Another refresh replaced the secret: a refusal of the old one marks nothing.
    const second = await cipher.seal(bind, 'second-secret');
    expect(await repo.replaceSecret('op_a', 'scon_1', second, null)).toBe(true);
    expect(await repo.setStatus('op_a', 'scon_1', 'needs_reauth', { ifSecretCt: first.ct })).toBe(false);
    expect((await repo.find('op_a', 'scon_1'))!.status).toBe('active');
    // The secret still held: marked.
    expect(await repo.setStatus('op_a', 'scon_1', 'needs_reauth', { ifSecretCt: second.ct })).toBe(true);
    expect((await repo.find('op_a', 'scon_1'))!.status).toBe('needs_reauth');
    // Without the condition, as before; another operator's row is not found.
    expect(await repo.setStatus('op_a', 'scon_1', 'active')).toBe(true);
    expect(await repo.setStatus('op_b', 'scon_1', 'needs_reauth')).toBe(false);
    expect((await repo.find('op_a', 'scon_1'))!.status).toBe('active');
  });
});
