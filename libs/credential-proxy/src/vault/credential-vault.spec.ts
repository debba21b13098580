import { randomBytes } from 'node:crypto';

import { createLogger, REDACTED, SecretRedactor, MemoryLogDestination } from '@stack/observability';

import { CredentialVault, MIN_TOKEN_LENGTH } from './credential-vault';

function setup() {
  const out = new MemoryLogDestination();
  const redactor = new SecretRedactor();
  const logger = createLogger({ level: 'info', service: 'credential-proxy', instance: 'node-1', destination: out, redactor });
  const vault = CredentialVault.fromMasterKeys(`k1:${randomBytes(32).toString('base64')}`, logger);
  return { out, redactor, logger, vault };
}

describe('CredentialVault', () => {
  it('refuses to seal a token or value shorter than MIN_TOKEN_LENGTH, and unrelated log lines stay intact', async () => {
    const { out, logger, vault } = setup();
    await expect(vault.seal('op_a', 'scon_1', { kind: 'token', token: 'e' })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(vault.seal('op_a', 'scon_2', { kind: 'value', value: 'x'.repeat(MIN_TOKEN_LENGTH - 1) })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    logger.info({ path: '/repos/acme/app' }, 'every line keeps its e and its x');
    expect(out.records()[0]).toMatchObject({ msg: 'every line keeps its e and its x', path: '/repos/acme/app' });
  });

  it('seals a one-character password without registering it; the basic header it makes is still redacted', async () => {
    const { out, logger, vault } = setup();
    const sealed = await vault.seal('op_a', 'scon_1', { kind: 'basic', username: 'me', password: 'e' });
    const header = Buffer.from('me:e').toString('base64');
    logger.info({ header }, 'password e');
    expect(out.records()[0]).toMatchObject({ msg: 'password e', header: REDACTED });
    expect(await vault.open('op_a', 'scon_1', sealed)).toEqual({ kind: 'basic', username: 'me', password: 'e' });
  });

  it('keeps the redactor bounded across many token refreshes of one connection, the live token always redacted', async () => {
    const { out, logger, redactor, vault } = setup();
    const token = () => `gho_${randomBytes(12).toString('hex')}`;
    let sealed = await vault.seal('op_a', 'scon_1', { kind: 'oauth2', access_token: token(), refresh_token: token() });
    await vault.open('op_a', 'scon_1', sealed);
    const baseline = redactor.size;
    let live = '';
    for (let i = 0; i < 200; i++) {
      live = token();
      sealed = await vault.seal('op_a', 'scon_1', { kind: 'oauth2', access_token: live, refresh_token: token() });
      await vault.open('op_a', 'scon_1', sealed);
    }
    expect(redactor.size).toBeLessThanOrEqual(2 * baseline);
    logger.info(`using ${live}`);
    expect(out.records()[0]!.msg).toBe(`using ${REDACTED}`);
  });

  it('forget: a deleted connection’s secrets are no longer redacted; one another connection holds still is', async () => {
    const { out, logger, redactor, vault } = setup();
    const baseline = redactor.size;
    await vault.seal('op_a', 'scon_2', { kind: 'token', token: 'ghp_shared_token_2222' });
    const sealed = await vault.seal('op_a', 'scon_1', { kind: 'oauth2', access_token: 'gho_only_scon1_1111', refresh_token: 'ghp_shared_token_2222' });
    await vault.open('op_a', 'scon_1', sealed);
    vault.forget('op_a', 'scon_1');
    logger.info('gho_only_scon1_1111 ghp_shared_token_2222');
    expect(out.records()[0]!.msg).toBe(`gho_only_scon1_1111 ${REDACTED}`);
    vault.forget('op_a', 'scon_2');
    expect(redactor.size).toBe(baseline);
  });
});
