/**
 * What the passport service must show over REST (issue 5), written once and run against the
 * one process and the six-process topology: agents and grants, issue, verify, delegate,
 * refresh, list, revoke — each rule and each error code.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';

import type { PassportClient } from './passport-client';
import { eventually } from './wait';

export async function expectAgentsAndGrants(api: PassportClient): Promise<void> {
  const bad = await api.call('POST', '/v1/agents/register', { name: 'Not-Valid-' });
  expect({ status: bad.status, code: bad.body.error?.code }).toEqual({ status: 400, code: 'INVALID_REQUEST' });
  expect((await api.call('POST', '/v1/agents/register', { name: 'x'.repeat(65) })).status).toBe(400);
  const unauth = await api.call('POST', '/v1/agents/register', { name: 'ok-name' }, { auth: false });
  expect({ status: unauth.status, code: unauth.body.error?.code }).toEqual({ status: 401, code: 'UNAUTHORIZED' });

  const agentId = await api.agentWithGrant('builder');
  const dup = await api.ok<{ name: string }>('GET', `/v1/agents/${agentId}`);
  expect((await api.call('POST', '/v1/agents/register', { name: dup.name })).body.error?.code).toBe('INVALID_REQUEST');
  const list = await api.ok<{ agents: { id: string }[] }>('GET', '/v1/agents');
  expect(list.agents.map((a) => a.id)).toContain(agentId);
  const renamed = await api.ok<{ description: string }>('PATCH', `/v1/agents/${agentId}`, { description: 'builds things' });
  expect(renamed.description).toBe('builds things');
  const grants = await api.ok<{ grants: { connection_id: string; scopes: string[] }[] }>('GET', `/v1/agents/${agentId}/grants`);
  expect(grants.grants).toEqual([expect.objectContaining({ connection_id: 'scon_github1', scopes: ['repo:read', 'repo:write'] })]);

  // Another operator sees none of it: 404, never 403.
  const other = await api.call('GET', `/v1/agents/${agentId}`, undefined, { auth: api.caller({ operator_id: 'op_someone_else' }) });
  expect({ status: other.status, code: other.body.error?.code }).toEqual({ status: 404, code: 'NOT_FOUND' });

  const gone = await api.agentWithGrant('deleted');
  const t = await api.issue(gone);
  expect((await api.ok<{ deleted: boolean }>('DELETE', `/v1/agents/${gone}`)).deleted).toBe(true);
  expect((await api.verify(t.token)).body).toMatchObject({ valid: false, revoked: true });
  expect((await api.call('GET', `/v1/agents/${gone}`)).status).toBe(404);
}

export async function expectIssueAndVerify(api: PassportClient, publicUrl: string): Promise<void> {
  const agentId = await api.agentWithGrant('issuer');
  const p = await api.issue(agentId, { intent_services: ['github'], services: [{ connection_id: 'scon_github1', scopes: ['repo:read'], constraints: [{ path: 'method', op: 'in', value: ['GET'] }] }] });
  expect(p.jti).toMatch(/^ppt_/);
  const exp = new Date(p.expires_at).getTime() - Date.now();
  expect(exp).toBeGreaterThan(890_000);
  expect(exp).toBeLessThanOrEqual(900_000);

  const v = await api.verify(p.token);
  expect(v.status).toBe(200);
  expect(v.body).toMatchObject({ valid: true, revoked: false });
  const stk = v.body.claims!.stk as Record<string, unknown>;
  expect(v.body.claims).toMatchObject({ sub: agentId, aud: publicUrl, iss: publicUrl });
  expect(stk).toMatchObject({
    operator_id: api.operatorId,
    agent_id: agentId,
    member_id: api.memberId,
    chain: [],
    delegation_depth: 0,
    intent_summary: 'e2e',
    intent_services: ['github'],
    services: [
      {
        connection_id: 'scon_github1',
        service_id: 'github',
        service_name: 'GitHub',
        scopes: ['repo:read'],
        constraints: [
          { path: 'url.host', op: 'eq', value: 'api.github.com' },
          { path: 'method', op: 'in', value: ['GET'] },
        ],
      },
    ],
  });
  expect(stk.session_id).toMatch(/^ses_/);
  expect(typeof stk.issued_at_ms).toBe('number');

  // Offline verification with the published JWKS, as any third party would.
  const [h, body, sig] = p.token.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { typ: string; alg: string; kid: string };
  expect(header).toMatchObject({ typ: 'passport+jwt', alg: 'EdDSA' });
  const jwks = await (await fetch(`${api.baseUrl}/v1/.well-known/jwks.json`)).json() as { keys: { kid: string; x: string; crv: string; kty: string }[] };
  const jwk = jwks.keys.find((k) => k.kid === header.kid)!;
  expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });
  expect(cryptoVerify(null, Buffer.from(`${h}.${body}`), createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' }), Buffer.from(sig, 'base64url'))).toBe(true);

  // Never more than the grants.
  const more = await api.call('POST', '/v1/passports/issue', { agent_id: agentId, services: [{ connection_id: 'scon_github1', scopes: ['repo:admin'] }] });
  expect({ status: more.status, code: more.body.error?.code }).toEqual({ status: 400, code: 'SCOPE_ESCALATION' });
  const unknown = await api.call('POST', '/v1/passports/issue', { agent_id: agentId, services: [{ connection_id: 'scon_nope', scopes: [] }] });
  expect(unknown.body.error?.code).toBe('SCOPE_ESCALATION');
  for (const ttl of [59, 3601]) expect((await api.call('POST', '/v1/passports/issue', { agent_id: agentId, ttl_seconds: ttl })).body.error?.code).toBe('INVALID_REQUEST');
  expect((await api.call('POST', '/v1/passports/issue', { agent_id: agentId, intent_summary: 'x'.repeat(501) })).body.error?.code).toBe('INVALID_REQUEST');
  expect((await api.call('POST', '/v1/passports/issue', { agent_id: 'agt_missing' })).body.error?.code).toBe('NOT_FOUND');

  // Bad passports: tampered, garbage.
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), sub: 'agt_evil' })).toString('base64url')}.${sig}`;
  expect((await api.verify(tampered)).body).toMatchObject({ valid: false, revoked: false, code: 'UNAUTHORIZED' });
  expect((await api.verify('not-a-token')).body).toMatchObject({ valid: false, code: 'UNAUTHORIZED' });

  // Refresh: a new passport, same session and grants.
  const fresh = await api.ok<{ token: string; jti: string }>('POST', '/v1/passports/refresh', { token: p.token, ttl_seconds: 120 });
  expect(fresh.jti).not.toBe(p.jti);
  const fv = await api.verify(fresh.token);
  expect(fv.body.valid).toBe(true);
  expect(fv.body.claims!.stk.session_id).toBe(stk.session_id);

  const active = await api.ok<{ passports: { jti: string }[] }>('GET', `/v1/passports?agent_id=${agentId}`);
  expect(active.passports.map((x) => x.jti).sort()).toEqual([p.jti, fresh.jti].sort());
}

export async function expectDelegation(api: PassportClient): Promise<void> {
  const agents: string[] = [];
  for (let i = 0; i < 6; i++) agents.push(await api.agentWithGrant(`hop${i}`));
  const root = await api.issue(agents[0]!, { ttl_seconds: 600 });
  const delegate = (parent: string, child: string, extra: Record<string, unknown> = {}) =>
    api.call<{ token: string; jti: string; expires_at: string }>('POST', '/v1/passports/delegate', { parent_token: parent, child_agent_id: child, services: [{ connection_id: 'scon_github1', scopes: ['repo:read'] }], ...extra });

  const escalate = await delegate(root.token, agents[1]!, { services: [{ connection_id: 'scon_other', scopes: ['repo:read'] }] });
  expect({ status: escalate.status, code: escalate.body.error?.code }).toEqual({ status: 400, code: 'SCOPE_ESCALATION' });
  const tooLong = await delegate(root.token, agents[1]!, { ttl_seconds: 601 });
  expect(tooLong.body.error?.code).toBe('INVALID_REQUEST');

  let parent = root;
  const chain: string[] = [];
  for (let hop = 1; hop <= 4; hop++) {
    const child = await delegate(parent.token, agents[hop]!, { ttl_seconds: 300 - hop * 10, services: [{ connection_id: 'scon_github1', scopes: ['repo:read'], constraints: [{ path: `query.hop${hop}`, op: 'eq', value: 'x' }] }] });
    expect({ status: child.status, error: child.body.error }).toEqual({ status: 201, error: undefined });
    chain.push(parent.jti);
    const v = await api.verify(child.body.token);
    expect(v.body.valid).toBe(true);
    const stk = v.body.claims!.stk as { chain: string[]; delegation_depth: number; session_id: string; services: { scopes: string[]; constraints: { path: string }[] }[] };
    expect(stk.chain).toEqual(chain);
    expect(stk.delegation_depth).toBe(hop);
    expect(stk.services[0]!.scopes).toEqual(['repo:read']);
    // Every ancestor's constraints are carried down.
    expect(stk.services[0]!.constraints.map((c) => c.path)).toEqual(['url.host', ...Array.from({ length: hop }, (_, i) => `query.hop${i + 1}`)]);
    // A child asking for a scope its parent lacks.
    if (hop === 1) expect((await delegate(child.body.token, agents[2]!, { services: [{ connection_id: 'scon_github1', scopes: ['repo:write'] }] })).body.error?.code).toBe('SCOPE_ESCALATION');
    parent = child.body;
  }
  const fifth = await delegate(parent.token, agents[5]!);
  expect({ status: fifth.status, code: fifth.body.error?.code }).toEqual({ status: 400, code: 'DELEGATION_DEPTH_EXCEEDED' });

  // Revoking an ancestor kills every descendant (the chain check).
  const leaf = parent;
  await api.ok('POST', '/v1/passports/revoke', { jti: chain[1] });
  // Through the public origin the next call may reach another node, which learns the revocation
  // from the stream a moment later (as the other revocation checks allow for).
  const verdict = await eventually(async () => {
    const body = (await api.verify(leaf.token)).body;
    return body.revoked === true ? body : undefined;
  }, 2000, 'the leaf refused on every node');
  expect(verdict).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
  expect((await api.verify(root.token)).body.valid).toBe(true);
  const refused = await eventually(async () => {
    const answer = await delegate(leaf.token, agents[5]!);
    return answer.status === 401 ? answer : undefined;
  }, 2000, 'delegation from the revoked leaf refused on every node');
  expect({ status: refused.status, code: refused.body.error?.code }).toEqual({ status: 401, code: 'PASSPORT_REVOKED' });
}

export async function expectRevocationKinds(api: PassportClient): Promise<void> {
  const a = await api.agentWithGrant('revokee');
  const b = await api.agentWithGrant('bystander');
  const pa = await api.issue(a);
  const pb = await api.issue(b);

  expect((await api.call('POST', '/v1/passports/revoke', {})).body.error?.code).toBe('INVALID_REQUEST');
  expect((await api.call('POST', '/v1/passports/revoke', { jti: 'ppt_unknown' })).body.error?.code).toBe('NOT_FOUND');
  expect((await api.call('POST', '/v1/passports/revoke', { jti: pa.jti }, { auth: api.caller({ operator_id: 'op_elsewhere' }) })).body.error?.code).toBe('NOT_FOUND');

  const byAgent = await api.ok<{ revoked: { kind: string; value: string } }>('POST', '/v1/passports/revoke', { agent_id: a, reason: 'e2e' });
  expect(byAgent.revoked).toMatchObject({ kind: 'agent', value: a });
  expect(await revokedSoon(api, pa.token)).toBe(true);
  expect((await api.verify(pb.token)).body.valid).toBe(true);
  // A passport issued after the agent's revocation is alive.
  const after = await api.issue(a);
  expect((await api.verify(after.token)).body.valid).toBe(true);

  const session = (await api.verify(pb.token)).body.claims!.stk.session_id as string;
  await api.ok('POST', '/v1/passports/revoke', { session_id: session });
  expect(await revokedSoon(api, pb.token)).toBe(true);
  expect((await api.ok<{ passports: { jti: string }[] }>('GET', '/v1/passports')).passports.map((p) => p.jti)).toContain(after.jti);

  const noConfirm = await api.call('POST', '/v1/passports/revoke', { all: true });
  expect(noConfirm.body.error?.code).toBe('INVALID_REQUEST');
  const scoped = await api.call('POST', '/v1/passports/revoke', { all: true, confirm: true }, { auth: api.caller({ scopes: ['stack:passports'] }) });
  expect({ status: scoped.status, code: scoped.body.error?.code }).toEqual({ status: 403, code: 'FORBIDDEN' });
  await api.ok('POST', '/v1/passports/revoke', { all: true, confirm: true });
  expect(await revokedSoon(api, after.token)).toBe(true);
  expect((await api.ok<{ passports: unknown[] }>('GET', '/v1/passports')).passports).toEqual([]);
}

/**
 * Through the public origin a verify may land on another replica than the revoke did; the
 * revocation reaches it within a fraction of a second, not within the same millisecond.
 */
async function revokedSoon(api: { verify(token: string): Promise<{ body: { revoked?: boolean } }> }, token: string): Promise<boolean> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const revoked = (await api.verify(token)).body.revoked === true;
    if (revoked || Date.now() > deadline) return revoked;
    await new Promise((r) => setTimeout(r, 50));
  }
}
