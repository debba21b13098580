/**
 * The passport service on the real Postgres and NATS, driven over the bus as the MCP gateway
 * will drive it (each command with a signed caller context): the rules and their error codes,
 * key rotation with the JWKS keeping the retired key, revocations written with their outbox
 * rows in one transaction, a member revocation published by auth killing that member's
 * passports and being kept for later snapshots, and revocations reaching what was delegated or
 * refreshed from the revoked passports, or minted while they committed.
 */
import { randomBytes } from 'node:crypto';

import type { Bus, BusConnection } from '@stack/bus';
import { AuditRecordedEvent, ClientApprovedEvent, PASSPORT_COMMANDS, RevocationRecordedEvent, type CallerContext } from '@stack/contracts';
import type { RunningStack } from '@stack/runtime';
import { CallerContextSigner, signPassport } from '@stack/security';
import { uniqueName } from '@stack/testing';
import type { EntityManager } from 'typeorm';

import { SigningKeys } from './keys/signing-keys.service';
import { PassportService } from './passports/passport.service';
import { PassportStore } from './store/passport.store';
import { startPassportUnderTest, type PassportUnderTest } from './testing/passport-under-test';

const C = PASSPORT_COMMANDS;

describe('passport service over the bus (real Postgres and NATS)', () => {
  let under: PassportUnderTest;
  let stack: RunningStack;
  let client: BusConnection;
  let gateway: Bus;
  const operator = `op_${randomBytes(4).toString('hex')}`;
  const member: CallerContext = { issuer: 'mcp-gateway', kind: 'member', operator_id: operator, member_id: 'mem_1', client_id: 'cli_1', scopes: ['stack:passports'], session_id: 'ses_mcp_1' };
  const admin: CallerContext = { ...member, scopes: ['stack:passports', 'stack:admin'] };

  beforeAll(async () => {
    under = await startPassportUnderTest({ name: 'ppt', env: { STACK_REVOCATION_MAX_STALENESS: '5' } });
    ({ stack, client, gateway } = under);
  });

  afterAll(async () => {
    await under?.stop();
  });

  async function agentWithGrant(name: string): Promise<string> {
    const agent = (await gateway.request(C.registerAgent, { name }, { caller: member })) as { id: string };
    await gateway.request(C.grantAgentAccess, { agent_id: agent.id, connection_id: 'scon_1', service_id: 'github', scopes: ['read', 'write'], constraints: [{ path: 'url.host', op: 'eq', value: 'api.github.com' }] }, { caller: admin });
    return agent.id;
  }

  it('registers and lists agents for the caller, and refuses callers without an operator or the scope', async () => {
    const id = await agentWithGrant('bus-agent');
    const { agents } = await gateway.request(C.listAgents, {}, { caller: member });
    expect(agents.map((a) => a.id)).toEqual([id]);
    await expect(gateway.request(C.listAgents, {})).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(gateway.request(C.listAgents, {}, { caller: { ...member, scopes: ['stack:audit'] } })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    // No scopes is no rights (an access token whose grant ended up empty), never every right.
    const noScopes = { ...member, scopes: [] };
    await expect(gateway.request(C.listAgents, {}, { caller: noScopes })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(gateway.request(C.grantAgentAccess, { agent_id: id, connection_id: 'scon_2', service_id: 'github', scopes: ['read'] }, { caller: noScopes })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(gateway.request(C.issuePassport, { agent_id: id, intent_summary: 'x', services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: noScopes })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(gateway.request(C.revokeAllPassports, { confirm: true }, { caller: noScopes })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    // Granting needs stack:admin.
    await expect(gateway.request(C.grantAgentAccess, { agent_id: id, connection_id: 'scon_2', scopes: [] }, { caller: member })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(gateway.request(C.registerAgent, { name: 'Bad_Name' }, { caller: member })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(gateway.request(C.getAgent, { agent_id: id }, { caller: { ...member, operator_id: 'op_other' } })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('issues within the grants, carries the caller session, verifies, and delegates under the rules', async () => {
    const a = await agentWithGrant('parent-agent');
    const b = await agentWithGrant('child-agent');
    const issued = await gateway.request(C.issuePassport, { agent_id: a, intent_summary: 'triage', services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
    const v = await gateway.request(C.verifyPassport, { token: issued.token });
    expect(v).toMatchObject({ valid: true, revoked: false });
    expect(v.claims?.stk).toMatchObject({ session_id: 'ses_mcp_1', member_id: 'mem_1', services: [{ connection_id: 'scon_1', scopes: ['read'], constraints: [{ path: 'url.host', op: 'eq', value: 'api.github.com' }] }] });
    await expect(gateway.request(C.issuePassport, { agent_id: a, services: [{ connection_id: 'scon_1', scopes: ['admin'] }] }, { caller: member })).rejects.toMatchObject({ code: 'SCOPE_ESCALATION' });
    await expect(gateway.request(C.issuePassport, { agent_id: a, ttl_seconds: 30 }, { caller: member })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(gateway.request(C.issuePassport, { agent_id: a }, { caller: { ...member, member_id: undefined } })).rejects.toMatchObject({ code: 'FORBIDDEN' });

    // The parent holds read only: asking the child for write escalates even though the child agent was granted it.
    await expect(gateway.request(C.delegatePassport, { parent_token: issued.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['write'] }] }, { caller: member })).rejects.toMatchObject({ code: 'SCOPE_ESCALATION' });
    const child = await gateway.request(C.delegatePassport, { parent_token: issued.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }], ttl_seconds: 60 }, { caller: member });
    const cv = await gateway.request(C.verifyPassport, { token: child.token });
    expect(cv.claims?.stk).toMatchObject({ chain: [issued.jti], delegation_depth: 1, session_id: 'ses_mcp_1' });
    const listed = await gateway.request(C.listActivePassports, { session_id: 'ses_mcp_1' }, { caller: member });
    expect(listed.passports.map((p) => p.jti)).toEqual(expect.arrayContaining([issued.jti, child.jti]));

    // Revoke the parent over the bus: the child dies with it (the chain check).
    const revoked = await gateway.request(C.revokePassport, { jti: issued.jti, reason: 'test' }, { caller: member });
    expect(revoked.revoked).toMatchObject({ kind: 'jti', value: issued.jti, operator_id: operator });
    expect(await gateway.request(C.verifyPassport, { token: child.token })).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.revokeAllPassports, { confirm: true }, { caller: member })).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('a member limited to some connections (allowed_connections) grants, issues and delegates only those: FORBIDDEN otherwise', async () => {
    const limitedAdmin: CallerContext = { ...admin, member_id: 'mem_limited', allowed_connections: ['scon_1'] };
    const limited: CallerContext = { ...member, member_id: 'mem_limited', allowed_connections: ['scon_1'] };
    const a = await agentWithGrant('limited-parent');
    const b = await agentWithGrant('limited-child');
    // An unlimited admin also grants scon_2 to both agents.
    for (const id of [a, b]) await gateway.request(C.grantAgentAccess, { agent_id: id, connection_id: 'scon_2', scopes: ['read'] }, { caller: admin });

    await expect(gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_3', scopes: ['read'] }, { caller: limitedAdmin })).rejects.toMatchObject({ code: 'FORBIDDEN', details: { connection_id: 'scon_3' } });
    expect((await gateway.request(C.listAgentGrants, { agent_id: a }, { caller: member })).grants.map((g) => g.connection_id).sort()).toEqual(['scon_1', 'scon_2']);
    await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_1', service_id: 'github', scopes: ['read'] }, { caller: limitedAdmin });

    await expect(gateway.request(C.issuePassport, { agent_id: a, services: [{ connection_id: 'scon_2', scopes: ['read'] }] }, { caller: limited })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    // Without services: the agent's grants within the caller's connections only.
    const all = await gateway.request(C.issuePassport, { agent_id: a }, { caller: limited });
    expect((await gateway.request(C.verifyPassport, { token: all.token })).claims?.stk.services.map((s) => s.connection_id)).toEqual(['scon_1']);

    // A parent holding scon_2 (issued by an unlimited member): a limited caller cannot delegate it on.
    const parent = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    await expect(gateway.request(C.delegatePassport, { parent_token: parent.token, child_agent_id: b, services: [{ connection_id: 'scon_2', scopes: ['read'] }] }, { caller: limited })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const child = await gateway.request(C.delegatePassport, { parent_token: parent.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: limited });
    expect((await gateway.request(C.verifyPassport, { token: child.token })).claims?.stk.services.map((s) => s.connection_id)).toEqual(['scon_1']);
  });

  it('a member limited to some connections removes grants and refreshes passports of those only: FORBIDDEN otherwise', async () => {
    const limitedAdmin: CallerContext = { ...admin, member_id: 'mem_limited', allowed_connections: ['scon_1'] };
    const limited: CallerContext = { ...member, member_id: 'mem_limited', allowed_connections: ['scon_1'] };
    const a = await agentWithGrant('limited-remover');
    await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_2', scopes: ['read'] }, { caller: admin });

    await expect(gateway.request(C.removeAgentGrant, { agent_id: a, connection_id: 'scon_2' }, { caller: limitedAdmin })).rejects.toMatchObject({ code: 'FORBIDDEN', details: { connection_id: 'scon_2' } });
    expect((await gateway.request(C.listAgentGrants, { agent_id: a }, { caller: member })).grants.map((g) => g.connection_id).sort()).toEqual(['scon_1', 'scon_2']);

    // A passport holding scon_2 (issued by an unlimited member): a limited caller cannot refresh it, and nothing is minted.
    const both = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    await expect(gateway.request(C.refreshPassport, { token: both.token }, { caller: limited })).rejects.toMatchObject({ code: 'FORBIDDEN', details: { connection_id: 'scon_2' } });
    expect((await gateway.request(C.listActivePassports, { agent_id: a }, { caller: member })).passports.map((p) => p.jti)).toEqual([both.jti]);
    const own = await gateway.request(C.issuePassport, { agent_id: a }, { caller: limited });
    const refreshed = await gateway.request(C.refreshPassport, { token: own.token }, { caller: limited });
    expect((await gateway.request(C.verifyPassport, { token: refreshed.token })).claims?.stk.services.map((s) => s.connection_id)).toEqual(['scon_1']);

    await gateway.request(C.removeAgentGrant, { agent_id: a, connection_id: 'scon_1' }, { caller: limitedAdmin });
    expect((await gateway.request(C.listAgentGrants, { agent_id: a }, { caller: member })).grants.map((g) => g.connection_id)).toEqual(['scon_2']);
  });

  it('writes each revocation with its outbox rows (revocation and audit) and publishes it to STACK_REVOCATIONS', async () => {
    const a = await agentWithGrant('outboxed');
    const r = await gateway.request(C.revokeAgentPassports, { agent_id: a }, { caller: member });
    const ds = stack.dataSources.get('passport')!;
    const rows = (await ds.query(`SELECT id, event FROM "passport"."outbox" WHERE id = $1 OR (event = 'audit.recorded' AND payload->>'agent_id' = $2)`, [r.revoked.id, a])) as { id: string; event: string }[];
    expect(rows.map((x) => x.event).sort()).toEqual(['audit.recorded', 'revocation.recorded']);
    const stored = (await ds.query(`SELECT kind, value FROM "passport"."revocations" WHERE id = $1`, [r.revoked.id])) as { kind: string; value: string }[];
    expect(stored).toEqual([{ kind: 'agent', value: a }]);
    const seen: string[] = [];
    const h = await client.forService('audit').consume({ durable: uniqueName('c'), events: [RevocationRecordedEvent] }, async (_e, p) => {
      seen.push((p as { id: string }).id);
    });
    await waitFor(() => (seen.includes(r.revoked.id) ? true : undefined));
    await h.stop();
  });

  it('applies a member revocation published by auth to that member’s passports, and keeps it for later snapshots', async () => {
    const a = await agentWithGrant('member-bound');
    const other: CallerContext = { ...member, member_id: 'mem_leaving' };
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: other });
    const keep = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    const id = `rev_${randomBytes(6).toString('hex')}`;
    await client.forService('auth').publish(RevocationRecordedEvent, { id, kind: 'member', value: 'mem_leaving', operator_id: operator, revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 3_900_000 }, { id });
    await waitFor(async () => ((await gateway.request(C.verifyPassport, { token: p.token })).revoked ? true : undefined));
    expect((await gateway.request(C.verifyPassport, { token: keep.token })).valid).toBe(true);
    const ds = stack.dataSources.get('passport')!;
    await waitFor(async () => (((await ds.query(`SELECT 1 FROM "passport"."revocations" WHERE id = $1`, [id])) as unknown[]).length ? true : undefined));
    const snap = await gateway.request(C.revocationSnapshot, {});
    expect(snap.entries.map((e) => e.id)).toContain(id);
    expect(snap.seq).toBeGreaterThan(0);
  });

  it('a member revocation also kills what was refreshed or delegated from the member’s passports before it reached this node', async () => {
    const a = await agentWithGrant('member-race');
    const b = await agentWithGrant('member-race-child');
    const leaving: CallerContext = { ...member, member_id: 'mem_racing' };
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: leaving });
    // Auth stamps and commits the revocation; before it reaches this node, the holder refreshes and delegates.
    const revokedAt = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    const refreshed = await gateway.request(C.refreshPassport, { token: p.token }, { caller: member });
    const child = await gateway.request(C.delegatePassport, { parent_token: p.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
    const id = `rev_${randomBytes(6).toString('hex')}`;
    await client.forService('auth').publish(RevocationRecordedEvent, { id, kind: 'member', value: 'mem_racing', operator_id: operator, revoked_at_ms: revokedAt, expires_at_ms: revokedAt + 3_900_000 }, { id });
    await waitFor(async () => ((await gateway.request(C.verifyPassport, { token: p.token })).revoked ? true : undefined));
    for (const t of [refreshed, child]) await waitFor(async () => ((await gateway.request(C.verifyPassport, { token: t.token })).revoked ? true : undefined));
    await expect(gateway.request(C.refreshPassport, { token: refreshed.token }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.delegatePassport, { parent_token: child.token, child_agent_id: a, services: [] }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    // Once the revocation is known here, nothing more is minted for the member.
    await expect(gateway.request(C.issuePassport, { agent_id: a }, { caller: leaving })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    expect((await gateway.request(C.listActivePassports, { agent_id: a }, { caller: member })).passports.filter((x) => x.member_id === 'mem_racing')).toEqual([]);
  });

  it('audits issue and delegation through the outbox, and a refused verification on STACK_AUDIT', async () => {
    const a = await agentWithGrant('audited');
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    await gateway.request(C.delegatePassport, { parent_token: p.token, child_agent_id: a, services: [] }, { caller: member });
    expect((await gateway.request(C.verifyPassport, { token: 'garbage' })).valid).toBe(false);
    const seen: { action: string; outcome: string; passport_jti?: string; error_code?: string }[] = [];
    const h = await client.forService('audit').consume({ durable: uniqueName('aud'), events: [AuditRecordedEvent] }, async (_e, payload) => {
      seen.push(payload as (typeof seen)[number]);
    });
    try {
      await waitFor(() => (seen.some((e) => e.action === 'passport.verify' && e.outcome === 'denied' && e.error_code === 'UNAUTHORIZED') ? true : undefined));
      await waitFor(() => (seen.some((e) => e.action === 'passport.issue' && e.passport_jti === p.jti) ? true : undefined));
      await waitFor(() => (seen.some((e) => e.action === 'passport.delegate' && e.outcome === 'success') ? true : undefined));
    } finally {
      await h.stop();
    }
  });

  it('records an OAuth client a member approved as one agent of the operator (idempotently)', async () => {
    const approve = (id: string, memberId: string) =>
      client.forService('auth').publish(ClientApprovedEvent, { operator_id: operator, member_id: memberId, client_id: 'cli_claude', client_name: 'Claude Code', grant_id: `grt_${id}`, scopes: ['stack:passports'], approved_at: new Date().toISOString() }, { id });
    await approve('approval-1', 'mem_1');
    await approve('approval-1', 'mem_1');
    await approve('approval-2', 'mem_2');
    const agent = await waitFor(async () => (await gateway.request(C.listAgents, {}, { caller: member })).agents.find((a) => a.name.startsWith('claude-code-')));
    await new Promise((r) => setTimeout(r, 300));
    const all = (await gateway.request(C.listAgents, {}, { caller: member })).agents.filter((a) => a.name.startsWith('claude-code-'));
    expect(all).toEqual([agent]);
    expect(agent.description).toContain('approved by mem_1');
  });

  it('revoking an agent, or deleting it (DELETE /v1/agents/:id), kills the passports delegated from its passports', async () => {
    const a = await agentWithGrant('revoked-parent');
    const b = await agentWithGrant('surviving-child');
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    const child = await gateway.request(C.delegatePassport, { parent_token: p.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
    const own = await gateway.request(C.issuePassport, { agent_id: b }, { caller: member });
    await gateway.request(C.revokeAgentPassports, { agent_id: a }, { caller: member });
    expect(await gateway.request(C.verifyPassport, { token: child.token })).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.delegatePassport, { parent_token: child.token, child_agent_id: b, services: [] }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.refreshPassport, { token: child.token }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    // B's own passport lives on; so does A's next one.
    expect((await gateway.request(C.verifyPassport, { token: own.token })).valid).toBe(true);
    await new Promise((r) => setTimeout(r, 2));
    expect((await gateway.request(C.verifyPassport, { token: (await gateway.request(C.issuePassport, { agent_id: a }, { caller: member })).token })).valid).toBe(true);
    // The jti entry is written with the agent entry, through the outbox.
    const ds = stack.dataSources.get('passport')!;
    expect(await ds.query(`SELECT r.kind FROM "passport"."revocations" r JOIN "passport"."outbox" o ON o.id = r.id WHERE r.value = $1`, [p.jti])).toEqual([{ kind: 'jti' }]);

    const doomed = await agentWithGrant('deleted-parent');
    const p2 = await gateway.request(C.issuePassport, { agent_id: doomed }, { caller: member });
    const child2 = await gateway.request(C.delegatePassport, { parent_token: p2.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
    const bearer = `Bearer ${new CallerContextSigner(Buffer.from(stack.config.internalSecret!, 'base64')).sign(admin)}`;
    const res = await fetch(`${stack.url}/v1/agents/${doomed}`, { method: 'DELETE', headers: { authorization: bearer } });
    expect(res.status).toBe(200);
    expect(await gateway.request(C.verifyPassport, { token: child2.token })).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.delegatePassport, { parent_token: child2.token, child_agent_id: b, services: [] }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
  });

  it('revoking a passport kills the passports refreshed from it (transitively) and their children', async () => {
    const a = await agentWithGrant('refreshed');
    const b = await agentWithGrant('refreshed-child');
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    const p1 = await gateway.request(C.refreshPassport, { token: p.token }, { caller: member });
    const p2 = await gateway.request(C.refreshPassport, { token: p1.token }, { caller: member });
    const child = await gateway.request(C.delegatePassport, { parent_token: p1.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
    // Depth does not grow with refreshes.
    expect((await gateway.request(C.verifyPassport, { token: p2.token })).claims?.stk).toMatchObject({ chain: [], delegation_depth: 0 });
    const other = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    await gateway.request(C.revokePassport, { jti: p.jti }, { caller: member });
    for (const t of [p1, p2, child]) expect(await gateway.request(C.verifyPassport, { token: t.token })).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.refreshPassport, { token: p2.token }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    await expect(gateway.request(C.delegatePassport, { parent_token: p1.token, child_agent_id: b, services: [] }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    expect((await gateway.request(C.verifyPassport, { token: other.token })).valid).toBe(true);

    // A revocation committed while a refresh runs (after its check, before its row): the refresh is refused.
    const q = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    const store = stack.app.get(PassportStore);
    const service = stack.app.get(PassportService);
    const grants = store.grants.bind(store);
    const spy = jest.spyOn(store, 'grants').mockImplementationOnce(async (...args) => {
      await service.revoke(member, { kind: 'jti', value: q.jti });
      return grants(...args);
    });
    try {
      await expect(gateway.request(C.refreshPassport, { token: q.token }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    } finally {
      spy.mockRestore();
    }
    const listed = await gateway.request(C.listActivePassports, { agent_id: a }, { caller: member });
    expect(listed.passports.map((x) => x.jti).sort()).toEqual([other.jti]);
  });

  it('a session or agent revoked while issue, delegate or refresh runs kills what they mint', async () => {
    const a = await agentWithGrant('mid-call');
    const b = await agentWithGrant('mid-call-child');
    const store = stack.app.get(PassportStore);
    const service = stack.app.get(PassportService);
    const grants = store.grants.bind(store);
    const revokingDuringRead = (target: Parameters<PassportService['revoke']>[1]) =>
      jest.spyOn(store, 'grants').mockImplementationOnce(async (...args) => {
        await service.revoke(member, target);
        return grants(...args);
      });
    const sessionOf = (id: string): CallerContext => ({ ...member, session_id: id });

    // issue: the caller's session is revoked between the agent check and the mint.
    await gateway.request(C.issuePassport, { agent_id: a }, { caller: sessionOf('ses_mid_issue') });
    let spy = revokingDuringRead({ kind: 'session', value: 'ses_mid_issue' });
    const issued = await gateway.request(C.issuePassport, { agent_id: a }, { caller: sessionOf('ses_mid_issue') });
    spy.mockRestore();
    expect(await gateway.request(C.verifyPassport, { token: issued.token })).toMatchObject({ valid: false, code: 'PASSPORT_REVOKED' });

    // delegate: the child agent is revoked while its grants are read.
    const parent = await gateway.request(C.issuePassport, { agent_id: a }, { caller: sessionOf('ses_mid_delegate') });
    spy = revokingDuringRead({ kind: 'agent', value: b });
    const child = await gateway.request(C.delegatePassport, { parent_token: parent.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
    spy.mockRestore();
    expect(await gateway.request(C.verifyPassport, { token: child.token })).toMatchObject({ valid: false, code: 'PASSPORT_REVOKED' });

    // refresh: the session is revoked while the agent's grants are read.
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: sessionOf('ses_mid_refresh') });
    spy = revokingDuringRead({ kind: 'session', value: 'ses_mid_refresh' });
    const refreshed = await gateway.request(C.refreshPassport, { token: p.token }, { caller: member });
    spy.mockRestore();
    expect(await gateway.request(C.verifyPassport, { token: refreshed.token })).toMatchObject({ valid: false, code: 'PASSPORT_REVOKED' });
  });

  describe('a mint racing a subject revocation', () => {
    const sessionOf = (id: string): CallerContext => ({ ...member, session_id: id });
    type Work = (m: EntityManager) => Promise<unknown>;
    /** Runs the next transaction of the store (the revocation's) with `around` wrapped about its commit. */
    const aroundNextTransaction = (around: (commit: (work: Work) => Promise<unknown>, work: Work) => Promise<unknown>) => {
      const store = stack.app.get(PassportStore);
      const transaction = store.transaction.bind(store) as (work: Work) => Promise<unknown>;
      return jest.spyOn(store, 'transaction').mockImplementationOnce(((work: Work) => around(transaction, work)) as PassportStore['transaction']);
    };
    const lockWaiters = async () =>
      ((await stack.dataSources.get('passport')!.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)) as { n: number }[])[0]!.n;
    /**
     * The outcome of `mint`, started inside the revocation's transaction after its writes, before
     * its commit (a moment after its stamp); the commit waits until the mint has finished or waits on a lock.
     */
    const mintWhileCommitting = async <T>(revoke: () => Promise<unknown>, mint: () => Promise<T>): Promise<T> => {
      let minting: Promise<T> | undefined;
      const spy = aroundNextTransaction((commit, work) =>
        commit(async (m) => {
          const written = await work(m);
          await new Promise((r) => setTimeout(r, 5));
          let settled = false;
          minting = mint().finally(() => (settled = true));
          minting.catch(() => undefined);
          await waitFor(async () => (settled || (await lockWaiters()) > 0 ? true : undefined));
          return written;
        }),
      );
      try {
        await revoke();
      } finally {
        spy.mockRestore();
      }
      return minting!;
    };

    it('a delegation started while a session revocation commits, from a passport of that session, is refused', async () => {
      const a = await agentWithGrant('racing-parent');
      const b = await agentWithGrant('racing-child');
      const service = stack.app.get(PassportService);
      const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: sessionOf('ses_commit_delegate') });
      const delegated = mintWhileCommitting(
        () => service.revoke(member, { kind: 'session', value: 'ses_commit_delegate' }),
        () => service.delegate(member, { parent_token: p.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }),
      );
      await expect(delegated).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    });

    it('an issue started while its agent’s deletion commits is refused', async () => {
      const doomed = await agentWithGrant('racing-deleted');
      const service = stack.app.get(PassportService);
      const issued = mintWhileCommitting(
        () => service.deleteAgent(admin, doomed),
        () => service.issue(member, { agent_id: doomed }),
      );
      await expect(issued).rejects.toMatchObject({ code: 'NOT_FOUND' });
    });

    it('a refresh on a node that has not applied a committed session revocation yet is refused', async () => {
      const a = await agentWithGrant('racing-refreshed');
      const service = stack.app.get(PassportService);
      const q = await gateway.request(C.issuePassport, { agent_id: a }, { caller: sessionOf('ses_unapplied') });
      let refreshed: Promise<unknown> | undefined;
      // Between the commit and this node applying the revocation: as on a node the stream has not reached yet.
      const spy = aroundNextTransaction((commit, work) =>
        commit(work).then(async (written) => {
          await new Promise((r) => setTimeout(r, 5));
          refreshed = service.refresh(member, { token: q.token });
          await refreshed.catch(() => undefined);
          return written;
        }),
      );
      try {
        await service.revoke(member, { kind: 'session', value: 'ses_unapplied' });
      } finally {
        spy.mockRestore();
      }
      await expect(refreshed).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    });
  });

  it('refuses a services list naming a connection twice, on issue and on delegation (INVALID_REQUEST)', async () => {
    const a = await agentWithGrant('dup-parent');
    const b = await agentWithGrant('dup-child');
    const twice = [
      { connection_id: 'scon_1', scopes: ['read'] },
      { connection_id: 'scon_1', scopes: ['write'] },
    ];
    await expect(gateway.request(C.issuePassport, { agent_id: a, services: twice }, { caller: member })).rejects.toMatchObject({ code: 'INVALID_REQUEST', details: { connection_id: 'scon_1' } });
    const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    await expect(gateway.request(C.delegatePassport, { parent_token: p.token, child_agent_id: b, services: twice }, { caller: member })).rejects.toMatchObject({ code: 'INVALID_REQUEST', details: { connection_id: 'scon_1' } });
  });

  it('refreshing a child checks ttl_seconds as delegation does: at least 1 s, no longer than the parent has left', async () => {
    const a = await agentWithGrant('ttl-parent');
    const b = await agentWithGrant('ttl-child');
    const p = await gateway.request(C.issuePassport, { agent_id: a, ttl_seconds: 600 }, { caller: member });
    const child = await gateway.request(C.delegatePassport, { parent_token: p.token, child_agent_id: b, services: [], ttl_seconds: 120 }, { caller: member });
    for (const ttl of [0, -5, 601]) {
      await expect(gateway.request(C.refreshPassport, { token: child.token, ttl_seconds: ttl }, { caller: member })).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/ttl_seconds|outlive/) });
      await expect(gateway.request(C.delegatePassport, { parent_token: p.token, child_agent_id: b, services: [], ttl_seconds: ttl }, { caller: member })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    }
    const longer = await gateway.request(C.refreshPassport, { token: child.token, ttl_seconds: 300 }, { caller: member });
    expect(Date.parse(longer.expires_at) - Date.now()).toBeGreaterThan(290_000);
    const left = await gateway.request(C.refreshPassport, { token: child.token }, { caller: member });
    expect(Date.parse(left.expires_at)).toBe((await gateway.request(C.verifyPassport, { token: p.token })).claims!.exp * 1000);
  });

  it('a refresh lineage never outlives its maximum lifetime (STACK_PASSPORT_MAX_LIFETIME_SECONDS): refreshes are cut to what is left, then refused with PASSPORT_EXPIRED', async () => {
    const a = await agentWithGrant('lineage-max');
    const store = stack.app.get(PassportStore);
    const maxLifetime = stack.config.passportMaxLifetimeMs;
    // A small setting (two longest TTLs), and the mint clock (the database's, read by mintTime) moved on at will.
    stack.config.passportMaxLifetimeMs = 7200_000;
    let offsetMs = 0;
    const mintTime = store.mintTime.bind(store);
    const clock = jest.spyOn(store, 'mintTime').mockImplementation(async (operatorId) => (await mintTime(operatorId)) + offsetMs);
    const claimsOf = async (t: { token: string }) => (await gateway.request(C.verifyPassport, { token: t.token })).claims!;
    try {
      const root = await gateway.request(C.issuePassport, { agent_id: a, ttl_seconds: 3600 }, { caller: member });
      const lineageEnd = Math.floor((await claimsOf(root)).stk.issued_at_ms / 1000) + 7200;

      // Well inside the lineage: the TTL asked for.
      offsetMs = 3000_000;
      const r1 = await gateway.request(C.refreshPassport, { token: root.token, ttl_seconds: 3600 }, { caller: member });
      const c1 = await claimsOf(r1);
      expect(c1.exp - c1.iat).toBe(3600);
      expect(c1.exp).toBeLessThan(lineageEnd);

      // Near its end: asking for more than is left is cut to the lineage's end, not refused.
      offsetMs = 6000_000;
      const r2 = await gateway.request(C.refreshPassport, { token: r1.token, ttl_seconds: 3600 }, { caller: member });
      const c2 = await claimsOf(r2);
      expect(c2.exp).toBe(lineageEnd);
      expect(Date.parse(r2.expires_at)).toBe(lineageEnd * 1000);
      expect(c2.exp - c2.iat).toBeLessThan(3600);
      // The default TTL too.
      offsetMs = 6900_000;
      const r3 = await gateway.request(C.refreshPassport, { token: r2.token }, { caller: member });
      expect((await claimsOf(r3)).exp).toBe(lineageEnd);

      // Past it: nothing is left, from any passport of the line, with the stable code and a clear message.
      offsetMs = 7200_000;
      for (const t of [r3, r2, r1, root]) {
        await expect(gateway.request(C.refreshPassport, { token: t.token, ttl_seconds: 60 }, { caller: member })).rejects.toMatchObject({
          code: 'PASSPORT_EXPIRED',
          message: expect.stringMatching(/refresh lineage has reached its maximum lifetime of 7200 s.*issue a new passport/),
          details: { max_lifetime_seconds: 7200, lineage_expires_at: new Date(lineageEnd * 1000).toISOString() },
        });
      }
      // The passports already minted keep their expiry; a new one starts a new lineage.
      expect((await gateway.request(C.verifyPassport, { token: r3.token })).valid).toBe(true);
      const fresh = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
      const again = await gateway.request(C.refreshPassport, { token: fresh.token, ttl_seconds: 3600 }, { caller: member });
      const ca = await claimsOf(again);
      expect(ca.exp - ca.iat).toBe(3600);
    } finally {
      clock.mockRestore();
      stack.config.passportMaxLifetimeMs = maxLifetime;
    }
  });

  it('rotates the signing key on demand: new passports use the new kid, the JWKS keeps the retired one, old passports still verify', async () => {
    const a = await agentWithGrant('rotation');
    const before = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    const oldKid = JSON.parse(Buffer.from(before.token.split('.')[0]!, 'base64url').toString()).kid as string;
    await expect(gateway.request(C.rotateSigningKey, {}, { caller: member })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const { kid } = await gateway.request(C.rotateSigningKey, {}, { caller: admin });
    expect(kid).not.toBe(oldKid);
    const after = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
    expect(JSON.parse(Buffer.from(after.token.split('.')[0]!, 'base64url').toString()).kid).toBe(kid);
    const { keys } = await gateway.request(C.getJwks, {});
    expect(keys.map((k) => k.kid).sort()).toEqual([kid, oldKid].sort());
    expect((await gateway.request(C.verifyPassport, { token: before.token })).valid).toBe(true);
    expect((await gateway.request(C.verifyPassport, { token: after.token })).valid).toBe(true);
    // On schedule: once the active key is older than the rotation period, the maintenance round rotates it.
    const keysService = stack.app.get(SigningKeys);
    const period = stack.config.passportKeyRotationMs;
    stack.config.passportKeyRotationMs = 0;
    try {
      await keysService['tick']();
    } finally {
      stack.config.passportKeyRotationMs = period;
    }
    const scheduled = (await keysService.signingKey()).kid;
    expect([kid, oldKid]).not.toContain(scheduled);
    expect((await gateway.request(C.getJwks, {})).keys.map((k) => k.kid).sort()).toEqual([kid, oldKid, scheduled].sort());
    // The private key is stored sealed, never in the clear.
    const rows = (await stack.dataSources.get('passport')!.query(`SELECT private_sealed::text AS s FROM "passport"."signing_keys"`)) as { s: string }[];
    for (const r of rows) expect(r.s).not.toContain('PRIVATE KEY');
  });

  describe('a grant removed or narrowed takes the rights it no longer gives at once', () => {
    const verdict = async (t: { token: string }) => gateway.request(C.verifyPassport, { token: t.token });
    const revokedNow = { valid: false, revoked: true, code: 'PASSPORT_REVOKED' };

    it('removing a grant revokes the agent’s live passports naming the connection, those refreshed and delegated from them, and audits it; the rest live on', async () => {
      const a = await agentWithGrant('grant-removed');
      const b = await agentWithGrant('grant-removed-child');
      await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_2', service_id: 'slack', scopes: ['read'] }, { caller: admin });
      const both = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
      const refreshed = await gateway.request(C.refreshPassport, { token: both.token }, { caller: member });
      const child = await gateway.request(C.delegatePassport, { parent_token: both.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
      const grandchild = await gateway.request(C.delegatePassport, { parent_token: child.token, child_agent_id: b, services: [] }, { caller: member });
      const onlyOther = await gateway.request(C.issuePassport, { agent_id: a, services: [{ connection_id: 'scon_2', scopes: ['read'] }] }, { caller: member });
      const bOwn = await gateway.request(C.issuePassport, { agent_id: b }, { caller: member });
      for (const t of [both, refreshed, child, grandchild, onlyOther, bOwn]) expect((await verdict(t)).valid).toBe(true);

      await gateway.request(C.removeAgentGrant, { agent_id: a, connection_id: 'scon_1' }, { caller: admin });
      // At once, long before any of them expires.
      for (const t of [both, refreshed, child, grandchild]) expect(await verdict(t)).toMatchObject(revokedNow);
      await expect(gateway.request(C.refreshPassport, { token: onlyOther.token }, { caller: member })).resolves.toBeDefined();
      await expect(gateway.request(C.delegatePassport, { parent_token: both.token, child_agent_id: b, services: [] }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
      // A passport of the agent not naming the connection, and the other agent's own, live on.
      expect((await verdict(onlyOther)).valid).toBe(true);
      expect((await verdict(bOwn)).valid).toBe(true);
      expect((await gateway.request(C.listActivePassports, { agent_id: a }, { caller: member })).passports.map((x) => x.jti)).not.toContain(both.jti);

      // Stored and published through the outbox as a jti revocation, and audited.
      const ds = stack.dataSources.get('passport')!;
      expect(await ds.query(`SELECT r.kind, r.reason FROM "passport"."revocations" r JOIN "passport"."outbox" o ON o.id = r.id WHERE r.value = $1`, [both.jti])).toEqual([{ kind: 'jti', reason: 'grant removed' }]);
      const audits = (await ds.query(`SELECT payload->>'action' AS action FROM "passport"."outbox" WHERE event = 'audit.recorded' AND payload->>'agent_id' = $1 AND payload->'target'->>'connection' = 'scon_1'`, [a])) as { action: string }[];
      expect(audits.map((x) => x.action).sort()).toEqual(['agent.grant_remove', 'passport.revoke_passport', 'passport.revoke_passport']);
      const seen: string[] = [];
      const h = await client.forService('audit').consume({ durable: uniqueName('g'), events: [RevocationRecordedEvent] }, async (_e, payload) => {
        seen.push((payload as { value: string }).value);
      });
      try {
        await waitFor(() => (seen.includes(both.jti) && seen.includes(refreshed.jti) ? true : undefined));
      } finally {
        await h.stop();
      }
    });

    it('narrowing a grant revokes the passports it no longer covers (scopes, constraints); widening it revokes nothing', async () => {
      const a = await agentWithGrant('grant-narrowed');
      const b = await agentWithGrant('grant-narrowed-child');
      const host = { path: 'url.host', op: 'eq', value: 'api.github.com' } as const;
      const getOnly = { path: 'method', op: 'eq', value: 'GET' } as const;
      const read = await gateway.request(C.issuePassport, { agent_id: a, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
      const write = await gateway.request(C.issuePassport, { agent_id: a, services: [{ connection_id: 'scon_1', scopes: ['read', 'write'] }] }, { caller: member });
      const writeChild = await gateway.request(C.delegatePassport, { parent_token: write.token, child_agent_id: b, services: [{ connection_id: 'scon_1', scopes: ['read'] }] }, { caller: member });
      const readGetOnly = await gateway.request(C.issuePassport, { agent_id: a, services: [{ connection_id: 'scon_1', scopes: ['read'], constraints: [getOnly] }] }, { caller: member });

      // Fewer scopes: what holds write dies (and its child); what holds read only lives.
      await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_1', service_id: 'github', scopes: ['read'], constraints: [host] }, { caller: admin });
      for (const t of [write, writeChild]) expect(await verdict(t)).toMatchObject(revokedNow);
      for (const t of [read, readGetOnly]) expect((await verdict(t)).valid).toBe(true);

      // A tighter constraint: what does not carry it dies; what already carries it lives.
      await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_1', service_id: 'github', scopes: ['read'], constraints: [host, getOnly] }, { caller: admin });
      expect(await verdict(read)).toMatchObject(revokedNow);
      expect((await verdict(readGetOnly)).valid).toBe(true);
      const fresh = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });

      // Widening (more scopes, fewer constraints) and granting the same again revoke nothing.
      const ds = stack.dataSources.get('passport')!;
      const count = async () => ((await ds.query(`SELECT count(*)::int AS n FROM "passport"."revocations" WHERE reason LIKE 'grant%'`)) as { n: number }[])[0]!.n;
      const before = await count();
      await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_1', service_id: 'github', scopes: ['read'], constraints: [host, getOnly] }, { caller: admin });
      await gateway.request(C.grantAgentAccess, { agent_id: a, connection_id: 'scon_1', service_id: 'github', scopes: ['read', 'write', 'admin'], constraints: [] }, { caller: admin });
      for (const t of [readGetOnly, fresh]) expect((await verdict(t)).valid).toBe(true);
      expect(await count()).toBe(before);
    });

    it('a passport minted under a grant removed while the mint runs (after its read of the grant) is refused', async () => {
      const a = await agentWithGrant('grant-removed-mid-issue');
      const store = stack.app.get(PassportStore);
      const service = stack.app.get(PassportService);
      const grants = store.grants.bind(store);
      const spy = jest.spyOn(store, 'grants').mockImplementationOnce(async (...args) => {
        const read = await grants(...args);
        await service.removeGrant(admin, a, 'scon_1');
        return read;
      });
      try {
        await expect(gateway.request(C.issuePassport, { agent_id: a }, { caller: member })).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
      } finally {
        spy.mockRestore();
      }
      expect((await gateway.request(C.listActivePassports, { agent_id: a }, { caller: member })).passports).toEqual([]);
    });
  });

  describe('signing keys across replicas', () => {
    it('a passport signed with a key another replica has just made verifies at once, even right after a maintenance round', async () => {
      const a = await agentWithGrant('new-kid');
      const p = await gateway.request(C.issuePassport, { agent_id: a }, { caller: member });
      const claims = (await gateway.request(C.verifyPassport, { token: p.token })).claims!;
      const keys = stack.app.get(SigningKeys);
      // Another replica (same table), rotating just after this node's maintenance round re-read the keys.
      const other = new SigningKeys(keys['kit']);
      await other['reload']();
      await keys['reload']();
      await other.rotate();
      const token = signPassport(claims, await other.signingKey());
      expect(await gateway.request(C.verifyPassport, { token })).toMatchObject({ valid: true, revoked: false });
    });

    it('unknown kids share their re-reads: a flood of random kids costs a couple of reads, and a kid found unknown is remembered', async () => {
      const keys = stack.app.get(SigningKeys);
      const reload = jest.spyOn(keys as unknown as { reload: () => Promise<void> }, 'reload');
      try {
        const found = await Promise.all(Array.from({ length: 200 }, () => keys.publicKey(`ppk_${randomBytes(12).toString('base64url')}`)));
        expect(found.every((k) => k === undefined)).toBe(true);
        expect(reload.mock.calls.length).toBeLessThanOrEqual(2);
        reload.mockClear();
        for (let i = 0; i < 20; i++) expect(await keys.publicKey('ppk_not_a_key_at_all')).toBeUndefined();
        expect(reload.mock.calls.length).toBe(1);
      } finally {
        reload.mockRestore();
      }
    });

    it('two rotations at the same moment: both answer with the one new key, no error', async () => {
      const ds = stack.dataSources.get('passport')!;
      const activeKids = async () => ((await ds.query(`SELECT kid FROM "passport"."signing_keys" WHERE status = 'active'`)) as { kid: string }[]).map((r) => r.kid);
      const [before] = await activeKids();
      // Hold the active key's row so both rotations queue on it, then let them race.
      const holder = ds.createQueryRunner();
      await holder.connect();
      let racing!: Promise<PromiseSettledResult<{ kid: string }>[]>;
      try {
        await holder.startTransaction();
        await holder.query(`SELECT kid FROM "passport"."signing_keys" WHERE status = 'active' FOR UPDATE`);
        racing = Promise.allSettled([gateway.request(C.rotateSigningKey, {}, { caller: admin }), gateway.request(C.rotateSigningKey, {}, { caller: admin })]);
        await waitFor(async () => (((await ds.query(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted`)) as { n: number }[])[0]!.n >= 2 ? true : undefined));
        await holder.commitTransaction();
      } finally {
        await holder.release();
      }
      const results = await racing;
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
      const kids = results.map((r) => (r as PromiseFulfilledResult<{ kid: string }>).value.kid);
      const after = await activeKids();
      expect(after).toHaveLength(1);
      expect(after[0]).not.toBe(before);
      expect(kids).toEqual([after[0], after[0]]);
    });
  });
});

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
