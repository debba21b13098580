/**
 * Passports and revocation on the distributed topology with three nodes that check passports:
 * three passport replicas, each asked directly (`POST /v1/passports/verify` on its own port).
 * A revocation reaches all three; a replica whose bus link is cut (a TCP fault proxy between
 * it and NATS) refuses everything with 503 REVOCATION_STATE_STALE once the staleness bound
 * (3 s here) passes, and recovers when the link returns; a replica restarted after a
 * revocation still refuses (snapshot from a peer, then replay).
 */
import { startDistributedStack, startTcpFaultProxy, type DistributedStack, type StackProcess, type TcpFaultProxy } from '@stack/testing';

import { PassportClient } from './support/passport-client';
import { expectAgentsAndGrants, expectDelegation, expectIssueAndVerify, expectRevocationKinds } from './support/passport-checks';
import { eventually } from './support/wait';

const STALENESS_S = 3;

describe('passports, distributed: three passport nodes', () => {
  let stack: DistributedStack;
  let fault: TcpFaultProxy;
  let api: PassportClient;
  let nodes: StackProcess[];

  beforeAll(async () => {
    stack = await startDistributedStack({ services: ['passport', 'audit'], replicas: { passport: 2 }, env: { STACK_REVOCATION_MAX_STALENESS: String(STALENESS_S) } });
    const nats = new URL(stack.natsUrl);
    fault = await startTcpFaultProxy({ target: { host: nats.hostname, port: Number(nats.port || 4222) } });
    await stack.addReplica('passport', { NATS_URL: `nats://${fault.address}` });
    nodes = stack.processes.filter((p) => p.service === 'passport');
    api = new PassportClient(stack.publicUrl, stack.internalSecret);
  });

  afterAll(async () => {
    await stack?.stop();
    await fault?.stop();
  });

  const verifyOn = (node: StackProcess, token: string) => api.at(node.url, stack.internalSecret).verify(token);

  it('runs three passport nodes, each ready with fresh revocation state', async () => {
    expect(nodes).toHaveLength(3);
    for (const n of nodes) {
      const body = (await (await fetch(`${n.url}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
      expect(body.checks.revocations).toMatchObject({ ok: true });
    }
  });

  it('serves agents, issue, verify, delegate, refresh and revoke through the public origin', async () => {
    await expectAgentsAndGrants(api);
    await expectIssueAndVerify(api, stack.publicUrl);
    await expectDelegation(api);
    await expectRevocationKinds(api);
  });

  it('revoke → all three nodes refuse', async () => {
    const agent = await api.agentWithGrant('fanout');
    const p = await api.issue(agent);
    for (const n of nodes) expect((await verifyOn(n, p.token)).body.valid).toBe(true);
    await api.ok('POST', '/v1/passports/revoke', { jti: p.jti });
    for (const n of nodes) {
      const answer = await eventually(async () => {
        const r = await verifyOn(n, p.token);
        return r.body.revoked ? r : undefined;
      }, 5000, `${n.instanceId} refuses the revoked passport`);
      expect(answer.body).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
    }
  });

  it('a node cut off from the bus refuses everything after the staleness bound, and recovers when the link returns', async () => {
    const cut = nodes[2]!;
    const agent = await api.agentWithGrant('partition');
    const before = await api.issue(agent);
    expect((await verifyOn(cut, before.token)).body.valid).toBe(true);

    fault.cut();
    const cutAt = Date.now();
    const stale = await eventually(async () => {
      const r = await verifyOn(cut, before.token);
      return r.status === 503 ? r : undefined;
    }, 15_000, 'the cut node turns stale');
    // Not before the bound: the node was fresh when the link went.
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(STALENESS_S * 1000 - 1500);
    expect(stale.body.error?.code).toBe('REVOCATION_STATE_STALE');
    const ready = await fetch(`${cut.url}/readyz`);
    expect(ready.status).toBe(503);

    // Meanwhile the healthy nodes learn of a revocation the cut node cannot hear.
    await api.at(nodes[0]!.url, stack.internalSecret).ok('POST', '/v1/passports/revoke', { jti: before.jti });
    await eventually(async () => ((await verifyOn(nodes[1]!, before.token)).body.revoked ? true : undefined), 5000, 'a healthy node refuses');
    const stillStale = await verifyOn(cut, before.token);
    expect(stillStale.status).toBe(503);

    fault.restore();
    const after = await eventually(async () => {
      const r = await verifyOn(cut, before.token);
      return r.status === 200 ? r : undefined;
    }, 20_000, 'the cut node recovers');
    expect(after.body).toMatchObject({ valid: false, revoked: true });
    const other = await api.issue(agent);
    expect((await verifyOn(cut, other.token)).body.valid).toBe(true);
  });

  it('a node restarted after a revocation still refuses (snapshot from a peer, then replay)', async () => {
    const agent = await api.agentWithGrant('restart');
    const p = await api.issue(agent);
    const victim = nodes[1]!;
    await stack.removeReplica(victim);
    await api.ok('POST', '/v1/passports/revoke', { agent_id: agent });
    const fresh = await stack.addReplica('passport');
    const r = await verifyOn(fresh, p.token);
    expect(r.body).toMatchObject({ valid: false, revoked: true, code: 'PASSPORT_REVOKED' });
    // It loaded a peer's snapshot (complete up to a non-zero sequence), not the whole stream.
    const line = fresh.process.logs().find((l) => l.includes('revocation state loaded from a snapshot'));
    expect((JSON.parse(line ?? '{}') as { seq?: number }).seq).toBeGreaterThan(0);
    nodes[1] = fresh;
  });
});
