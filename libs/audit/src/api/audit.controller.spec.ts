/**
 * The audit REST controller with its log and caller resolver stubbed: the live tail ends once its
 * credential stops resolving, and a tree id beyond Postgres' integer range is a bad request.
 */
import { EventEmitter } from 'node:events';

import type { Request, Response } from 'express';

import { StackError, type CallerContext } from '@stack/contracts';
import type { ServiceKit } from '@stack/runtime';

import type { AuditLog, ListItem } from '../log/audit-log.service';
import type { AuditCallerResolver } from './audit-caller.resolver';
import { AuditController } from './audit.controller';

const caller: CallerContext = { issuer: 'passport', kind: 'agent', operator_id: 'op_a', member_id: 'mem_a', agent_id: 'agt_a', passport_jti: 'ppt_a', scopes: ['stack:audit'] };
const item = (leaf: number): ListItem => ({ entry: { id: `aud_${leaf}`, leaf_index: leaf } as never, leaf_index: leaf, tree_id: 1 });

function stubs(resolve: () => Promise<CallerContext>) {
  let leaf = 0;
  const log = {
    // The tail's first read asks for the newest entry; every later round finds one new entry.
    list: jest.fn(async (_scope: unknown, q: { limit?: number }) => ({ items: q.limit === 1 ? [] : [item(leaf++)] })),
    consistencyProof: jest.fn(async () => ({})),
    inclusionProof: jest.fn(async () => ({})),
    latestCheckpoint: jest.fn(async () => ({})),
  };
  const kit = { audit: { record: jest.fn(async () => 'aud_read') } } as unknown as ServiceKit;
  const resolver: AuditCallerResolver = { resolve: jest.fn(resolve) };
  return { log, resolver, controller: new AuditController(log as unknown as AuditLog, resolver, kit) };
}

function sse() {
  const req = Object.assign(new EventEmitter(), { headers: { authorization: 'Bearer x' } }) as unknown as Request;
  const out: string[] = [];
  let ended = false;
  const res = {
    status: () => res,
    set: () => res,
    flushHeaders: () => undefined,
    write: (chunk: string) => out.push(chunk) > 0,
    end: () => {
      ended = true;
    },
  };
  return { req, res: res as unknown as Response, out, ended: () => ended };
}

describe('audit controller', () => {
  it.each(['PASSPORT_REVOKED', 'PASSPORT_EXPIRED', 'UNAUTHORIZED'])('ends the live tail with an error event once the credential fails (%s)', async (code) => {
    let calls = 0;
    // Good for the request and two rounds, then revoked, expired or gone.
    const { controller } = stubs(async () => {
      if (++calls > 3) throw new StackError(code as never, 'the credential no longer resolves');
      return caller;
    });
    const { req, res, out, ended } = sse();
    const tail = controller.list(req, res, { follow: 'true' });
    try {
      await Promise.race([tail, new Promise((r) => setTimeout(r, 5000))]);
      expect(ended()).toBe(true);
      const events = out.join('');
      expect(events.match(/event: entry/g)).toHaveLength(2);
      expect(events).toMatch(new RegExp(`event: error\\ndata: .*"code":"${code}"`));
    } finally {
      req.emit('close');
      await tail;
    }
  }, 10_000);

  it('refuses a member token without stack:audit (or stack:admin) on every read, before recording or reading anything', async () => {
    const servicesOnly: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_a', member_id: 'mem_a', scopes: ['stack:services', 'stack:passports'] };
    const { controller, log } = stubs(async () => servicesOnly);
    const { req, res } = sse();
    const kitRecord = (controller as unknown as { kit: ServiceKit }).kit.audit.record as jest.Mock;
    for (const call of [
      () => controller.list(req, res, {}),
      () => controller.list(req, res, { follow: 'true' }),
      () => controller.export(req, res, {}),
      () => controller.inclusion(req, { entry_id: 'aud_1' }),
      () => controller.consistency(req, { tree_size_1: '0' }),
      () => controller.latest(req, {}),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'FORBIDDEN', message: expect.stringContaining('stack:audit'), details: { required_scopes: ['stack:audit'] } });
    }
    expect(log.list).not.toHaveBeenCalled();
    expect(log.inclusionProof).not.toHaveBeenCalled();
    expect(log.consistencyProof).not.toHaveBeenCalled();
    expect(log.latestCheckpoint).not.toHaveBeenCalled();
    expect(kitRecord).not.toHaveBeenCalled();
  });

  it('lets a member with stack:audit read their own actions, and an agent with its passport (no stack:* scope for the log) its own', async () => {
    const json = jest.fn();
    const res = { json } as unknown as Response;
    const member = stubs(async () => ({ issuer: 'auth', kind: 'member', operator_id: 'op_a', member_id: 'mem_a', scopes: ['stack:audit'] }));
    await member.controller.list(sse().req, res, {});
    expect(member.log.list).toHaveBeenCalledWith({ operatorId: 'op_a', memberId: 'mem_a' }, expect.anything());
    const passport: CallerContext = { issuer: 'passport', kind: 'agent', operator_id: 'op_a', member_id: 'mem_a', agent_id: 'agt_a', passport_jti: 'ppt_a', scopes: ['stack:services', 'stack:dropoffs'] };
    const agent = stubs(async () => passport);
    await agent.controller.list(sse().req, res, {});
    expect(agent.log.list).toHaveBeenCalledWith({ operatorId: 'op_a', agentId: 'agt_a' }, expect.anything());
    await agent.controller.inclusion(sse().req, { entry_id: 'aud_1' });
    expect(agent.log.inclusionProof).toHaveBeenCalledWith({ operatorId: 'op_a', agentId: 'agt_a' }, expect.objectContaining({ entry_id: 'aud_1' }));
  });

  it('refuses a tree_id beyond Postgres integer range as a bad request', async () => {
    const { controller, log } = stubs(async () => ({ ...caller, kind: 'member', agent_id: undefined, scopes: ['stack:admin'] }));
    const { req } = sse();
    for (const call of [
      () => controller.consistency(req, { tree_size_1: '0', tree_id: '99999999999' }),
      () => controller.inclusion(req, { leaf_index: '0', tree_id: '2147483648' }),
      () => controller.latest(req, { tree_id: '99999999999' }),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    }
    expect(log.consistencyProof).not.toHaveBeenCalled();
    await controller.consistency(req, { tree_size_1: '0', tree_id: '2147483647' });
    expect(log.consistencyProof).toHaveBeenCalledWith(expect.anything(), expect.objectContaining({ tree_id: 2147483647 }));
  });
});
