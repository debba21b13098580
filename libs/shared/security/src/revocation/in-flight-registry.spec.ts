import { StackError } from '@stack/contracts';

import { InFlightRegistry } from './in-flight-registry';
import type { RevocationEntry } from './revocation-set';

const e = (over: Partial<RevocationEntry>): RevocationEntry => ({ id: 'rev_1', kind: 'jti', value: 'ppt_a', operator_id: 'op_1', revoked_at_ms: 1000, expires_at_ms: 9_999_999_999_999, ...over });

describe('InFlightRegistry', () => {
  it.each([
    ['passport', e({ kind: 'jti', value: 'ppt_call' })],
    ['chain', e({ kind: 'jti', value: 'ppt_root' })],
    ['agent', e({ kind: 'agent', value: 'agt_1' })],
    ['session', e({ kind: 'session', value: 'ses_1' })],
    ['member', e({ kind: 'member', value: 'mem_1' })],
    ['operator', e({ kind: 'operator', value: 'op_1' })],
  ])('aborts a call by %s with PASSPORT_REVOKED, and only the calls it kills', (_what, revocation) => {
    const r = new InFlightRegistry();
    const call = r.track({ jti: 'ppt_call', chain: ['ppt_root'], agent_id: 'agt_1', session_id: 'ses_1', member_id: 'mem_1', operator_id: 'op_1', issued_at_ms: 500 });
    const bystander = r.track({ jti: 'ppt_b', agent_id: 'agt_2', session_id: 'ses_2', member_id: 'mem_2', operator_id: 'op_2', issued_at_ms: 500 });
    expect(r.abortMatching(revocation)).toBe(1);
    expect(call.signal.aborted).toBe(true);
    expect(call.signal.reason).toBeInstanceOf(StackError);
    expect((call.signal.reason as StackError).code).toBe('PASSPORT_REVOKED');
    expect(bystander.signal.aborted).toBe(false);
    expect(r.size).toBe(1);
  });

  it('leaves a call of a credential issued after a subject revocation alone, and forgets released calls', () => {
    const r = new InFlightRegistry();
    const later = r.track({ agent_id: 'agt_1', issued_at_ms: 2000 });
    expect(r.abortMatching(e({ kind: 'agent', value: 'agt_1', revoked_at_ms: 1000 }))).toBe(0);
    expect(later.signal.aborted).toBe(false);
    later.release();
    later.release();
    expect(r.size).toBe(0);
    expect(r.abortMatching(e({ kind: 'agent', value: 'agt_1', revoked_at_ms: 5000 }))).toBe(0);
  });

  it('tracks many calls of one subject object (a cached passport) and cuts them all, in two registries alike', () => {
    const subject = { jti: 'ppt_many', chain: ['ppt_up'], agent_id: 'agt_9', session_id: 'ses_9', member_id: 'mem_9', operator_id: 'op_9', issued_at_ms: 500 };
    const [r1, r2] = [new InFlightRegistry(), new InFlightRegistry()];
    const calls = Array.from({ length: 5 }, () => r1.track(subject));
    const elsewhere = r2.track(subject);
    calls[0]!.release();
    expect(r1.size).toBe(4);
    expect(r1.abortMatching(e({ kind: 'jti', value: 'ppt_up' }))).toBe(4);
    expect(calls.slice(1).every((c) => c.signal.aborted)).toBe(true);
    expect(calls[0]!.signal.aborted).toBe(false);
    expect(r1.size).toBe(0);
    expect(r2.abortMatching(e({ kind: 'session', value: 'ses_9' }))).toBe(1);
    expect(elsewhere.signal.aborted).toBe(true);
  });

  it('cuts a long call within the revocation, not at its end', async () => {
    const r = new InFlightRegistry();
    const call = r.track({ jti: 'ppt_slow', issued_at_ms: 1 });
    const slow = new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => resolve('answered'), 10_000);
      call.signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(call.signal.reason);
      });
    });
    const t0 = Date.now();
    setTimeout(() => r.abortMatching(e({ value: 'ppt_slow' })), 50);
    await expect(slow).rejects.toMatchObject({ code: 'PASSPORT_REVOKED' });
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
