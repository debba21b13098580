import { randomBytes } from 'node:crypto';

import { SYSTEM_COMMANDS, commandSubject, type CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';

import { CommandDispatcher } from './dispatch';

const ping = SYSTEM_COMMANDS.audit.ping;
const subject = commandSubject('t', ping);
const member: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:admin'] };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What both transports hand the dispatcher: the subject and the raw request bytes. */
async function send(d: CommandDispatcher<typeof ping>, meta: Record<string, unknown>, data: unknown = {}): Promise<{ ok: boolean; data?: { instance: string }; error?: { code: string } }> {
  return JSON.parse(decoder.decode(await d.dispatch({ subject, data: encoder.encode(JSON.stringify({ meta, data })) })));
}

describe('CommandDispatcher at the trust boundary', () => {
  const signer = new CallerContextSigner(randomBytes(32));
  let calls: CallerContext[];
  let d: CommandDispatcher<typeof ping>;
  beforeEach(() => {
    calls = [];
    d = new CommandDispatcher(ping, (_p, ctx) => {
      calls.push(ctx.caller);
      return { service: 'audit' as const, instance: `call-${calls.length}`, pid: 1, at: new Date().toISOString() };
    }, signer);
  });

  it('refuses a caller context signed for another subject (lifted off another message)', async () => {
    const lifted = signer.sign(member, 't.v1.events.audit.recorded');
    expect(await send(d, { id: 'a', caller: lifted, sender: 'passport' })).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    expect(calls).toHaveLength(0);
    expect(await send(d, { id: 'b', caller: signer.sign(member, subject), sender: 'passport' })).toMatchObject({ ok: true });
    expect(calls).toEqual([member]);
  });

  it('answers a remembered message id only to a verified resend by the same caller', async () => {
    const first = await send(d, { id: 'r1', replay: true, caller: signer.sign(member, subject), sender: 'passport' });
    expect(first.ok).toBe(true);
    // The id alone (no caller, a forged one) gets no answer, remembered or new.
    expect(await send(d, { id: 'r1', replay: true, sender: 'passport' })).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    expect(await send(d, { id: 'r1', replay: true, caller: 'x.y.z', sender: 'passport' })).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    // Another caller reusing it does not read the first caller's answer.
    const other: CallerContext = { ...member, operator_id: 'op_2', member_id: 'mem_2' };
    expect(await send(d, { id: 'r1', replay: true, caller: signer.sign(other, subject), sender: 'passport' })).toMatchObject({ ok: false, error: { code: 'IDEMPOTENCY_CONFLICT' } });
    // The same caller resending (in another object of the same context) gets the first answer.
    expect(await send(d, { id: 'r1', replay: true, caller: signer.sign({ ...member }, subject), sender: 'passport' })).toEqual(first);
    expect(calls).toHaveLength(1);
  });

  it('refuses a malformed envelope as INVALID_REQUEST or UNAUTHORIZED, never as a handler failure', async () => {
    const caller = signer.sign(member, subject);
    expect(await send(d, { id: 'm1', caller: 42, sender: 'passport' })).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    expect(await send(d, { id: 'm2', caller: { forged: true }, sender: 'passport' })).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    expect(await send(d, { id: 'm3', caller, sender: { service: 'passport' } })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(await send(d, { id: 'm4', caller, sender: 'passport', traceparent: 7 })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(calls).toHaveLength(0);
  });
});
