/**
 * Revocation cuts a call in flight (issue 5, through the proxy of issue 6): an agent's call with
 * its passport to an upstream that takes 10 s is aborted when the passport is revoked, and the
 * caller gets 401 PASSPORT_REVOKED within a second. Real passports (signed by the passport
 * service), a real credential-proxy process, the revocation travelling over NATS.
 */
import { randomBytes } from 'node:crypto';

import type { CallerContext } from '@stack/contracts';
import { startDistributedStack, type DistributedStack } from '@stack/testing';

import { PassportClient } from './support/passport-client';
import { ProxyClient, startProxyFixture, type ProxyFixture } from './support/proxy-checks';

describe('revocation cuts a proxied call in flight (distributed)', () => {
  let fx: ProxyFixture;
  let stack: DistributedStack;

  beforeAll(async () => {
    fx = await startProxyFixture();
    stack = await startDistributedStack({ services: ['credential-proxy', 'passport'], env: fx.env, logLevel: 'warn' });
  });

  afterAll(async () => {
    await stack?.stop();
    await fx?.close();
  });

  it('aborts the upstream call and answers PASSPORT_REVOKED within a second of the revocation', async () => {
    const passports = new PassportClient(stack.publicUrl, fx.internalSecret);
    const proxy = new ProxyClient(stack.publicUrl, fx.internalSecret);
    const admin: CallerContext = { issuer: 'auth', kind: 'member', operator_id: passports.operatorId, member_id: passports.memberId, scopes: ['stack:services', 'stack:admin'] };
    const conn = await proxy.call('POST', '/v1/connections', { service_id: 'github', name: `gh-${randomBytes(3).toString('hex')}`, credential: { token: fx.token } }, admin);
    expect(conn.status).toBe(201);
    const connectionId = String(conn.json.id);

    const agent = await passports.ok<{ id: string }>('POST', '/v1/agents/register', { name: `slow-agent-${randomBytes(3).toString('hex')}` });
    await passports.ok('POST', `/v1/agents/${agent.id}/grants`, { connection_id: connectionId, service_id: 'github', service_name: 'GitHub', scopes: ['read'] });
    const passport = await passports.issue(agent.id, { services: [{ connection_id: connectionId, scopes: ['read'] }] });

    // The agent's own call, with its passport: first a quick one that works.
    const asAgent: CallerContext = { issuer: 'passport', kind: 'agent', operator_id: passports.operatorId, agent_id: agent.id, scopes: ['stack:services'] };
    const quick = await proxy.call('POST', '/v1/proxy', { service: connectionId, method: 'GET', path: '/user', passport_token: passport.token }, asAgent);
    expect({ status: quick.status, upstream: quick.json.status }).toEqual({ status: 200, upstream: 200 });

    // Then one the upstream answers only after 10 s.
    const started = Date.now();
    const slow = proxy.call('POST', '/v1/proxy', { service: connectionId, method: 'GET', path: '/slow', query: { ms: '10000' }, passport_token: passport.token }, asAgent);
    await new Promise((r) => setTimeout(r, 500));
    const revokedAt = Date.now();
    await passports.ok('POST', '/v1/passports/revoke', { jti: passport.jti });
    const answer = await slow;
    const cutAfterMs = Date.now() - revokedAt;
    expect({ status: answer.status, code: (answer.json.error as { code?: string } | undefined)?.code }).toEqual({ status: 401, code: 'PASSPORT_REVOKED' });
    expect(cutAfterMs).toBeLessThan(1000);
    expect(Date.now() - started).toBeLessThan(5000);
    // And the passport stays refused.
    const again = await proxy.call('POST', '/v1/proxy', { service: connectionId, method: 'GET', path: '/user', passport_token: passport.token }, asAgent);
    expect((again.json.error as { code?: string }).code).toBe('PASSPORT_REVOKED');
  });
});
