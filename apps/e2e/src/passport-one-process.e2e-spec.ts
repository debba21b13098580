/**
 * Agents, passports and revocation in the one-process shape (embedded Postgres, in-process
 * bus): issue, verify, delegate, refresh, list and revoke through REST.
 */
import { generateStackSecrets, startOneProcessStack, type OneProcessStack } from '@stack/testing';

import { PassportClient } from './support/passport-client';
import { expectAgentsAndGrants, expectDelegation, expectIssueAndVerify, expectRevocationKinds } from './support/passport-checks';

describe('passports, one process', () => {
  let stack: OneProcessStack;
  let api: PassportClient;

  beforeAll(async () => {
    const { internalSecret } = generateStackSecrets();
    stack = await startOneProcessStack({ env: { STACK_INTERNAL_SECRET: internalSecret } });
    api = new PassportClient(stack.publicUrl, internalSecret);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('reports its revocation state in /readyz', async () => {
    const body = (await (await fetch(`${stack.publicUrl}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
    expect(body.checks.revocations).toMatchObject({ ok: true });
  });

  it('registers agents and grants them connections', () => expectAgentsAndGrants(api));
  it('issues passports within the grants and verifies them (also offline with the JWKS)', () => expectIssueAndVerify(api, stack.publicUrl));
  it('delegates subsets, up to four hops, and revoking an ancestor kills the subtree', () => expectDelegation(api));
  it('revokes by agent, session and operator', () => expectRevocationKinds(api));
});
