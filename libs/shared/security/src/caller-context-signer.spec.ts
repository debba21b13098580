import { randomBytes } from 'node:crypto';

import { StackError, type CallerContext } from '@stack/contracts';

import { CallerContextSigner } from './caller-context-signer';

const ctx: CallerContext = { issuer: 'mcp-gateway', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:services'] };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof StackError ? err.code : 'not-a-stack-error';
  }
  return undefined;
}

describe('CallerContextSigner', () => {
  const key = randomBytes(32);

  it('round-trips a context', () => {
    const s = new CallerContextSigner(key);
    expect(s.verify(s.sign(ctx))).toEqual(ctx);
  });

  it('refuses a token signed with another key', () => {
    const token = new CallerContextSigner(randomBytes(32)).sign(ctx);
    expect(codeOf(() => new CallerContextSigner(key).verify(token))).toBe('UNAUTHORIZED');
  });

  it('refuses a token whose claims were edited (privilege added)', () => {
    const s = new CallerContextSigner(key);
    const [h, p, sig] = s.sign(ctx).split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    claims.scopes.push('stack:admin');
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
    expect(codeOf(() => new CallerContextSigner(key).verify(forged))).toBe('UNAUTHORIZED');
  });

  it('refuses an expired token, a missing one, and garbage', () => {
    let now = 1_000_000;
    const s = new CallerContextSigner(key, 60_000, () => now);
    const token = s.sign(ctx);
    now += 61_000;
    expect(codeOf(() => s.verify(token))).toBe('UNAUTHORIZED');
    expect(codeOf(() => s.verify(undefined))).toBe('UNAUTHORIZED');
    expect(codeOf(() => s.verify('a.b.c'))).toBe('UNAUTHORIZED');
    expect(codeOf(() => s.verify('x'))).toBe('UNAUTHORIZED');
  });

  it('refuses a validly signed token of the wrong shape', () => {
    const s = new CallerContextSigner(key);
    const bad = s.sign({ ...ctx, issuer: 'not-a-service' as CallerContext['issuer'] });
    expect(codeOf(() => new CallerContextSigner(key).verify(bad))).toBe('UNAUTHORIZED');
  });

  it('carries allowed_connections, and refuses a signed context whose allowed_connections is not a list of ids', () => {
    const s = new CallerContextSigner(key);
    const limited: CallerContext = { ...ctx, allowed_connections: ['scon_a'] };
    expect(s.verify(s.sign(limited))).toEqual(limited);
    const bad = s.sign({ ...ctx, allowed_connections: 'scon_a' as unknown as string[] });
    expect(codeOf(() => new CallerContextSigner(key).verify(bad))).toBe('UNAUTHORIZED');
  });

  it('binds a bus context to its subject: refused on another subject and as a REST credential', () => {
    const s = new CallerContextSigner(key);
    const onAudit = s.sign(ctx, 'stack.v1.events.audit.recorded');
    expect(s.verify(onAudit, { audience: 'stack.v1.events.audit.recorded' })).toEqual(ctx);
    // Lifted off the audit stream and presented elsewhere, by a receiver that has it cached and by one that has not.
    for (const receiver of [s, new CallerContextSigner(key)]) {
      expect(codeOf(() => receiver.verify(onAudit, { audience: 'stack.v1.passport.issue_passport' }))).toBe('UNAUTHORIZED');
      expect(codeOf(() => receiver.verify(onAudit))).toBe('UNAUTHORIZED');
    }
    // The same context object signed for another subject gets its own binding, not the cached one.
    const onIssue = s.sign(ctx, 'stack.v1.passport.issue_passport');
    expect(onIssue).not.toBe(onAudit);
    expect(s.verify(onIssue, { audience: 'stack.v1.passport.issue_passport' })).toEqual(ctx);
    expect(s.sign(ctx, 'stack.v1.events.audit.recorded')).toBe(onAudit);
  });

  it('takes an unbound context (operator tooling, earlier senders) at REST and on any subject', () => {
    const s = new CallerContextSigner(key);
    const unbound = s.sign(ctx);
    expect(s.verify(unbound)).toEqual(ctx);
    expect(new CallerContextSigner(key).verify(unbound, { audience: 'stack.v1.passport.issue_passport' })).toEqual(ctx);
  });

  it('judges a context as of the time given (when a stream stored its message), not only now', () => {
    let now = 1_000_000;
    const s = new CallerContextSigner(key, 60_000, () => now);
    const token = s.sign(ctx, 'stack.v1.events.audit.recorded');
    const storedAt = now + 1_000;
    now += 120_000;
    expect(codeOf(() => s.verify(token, { audience: 'stack.v1.events.audit.recorded' }))).toBe('UNAUTHORIZED');
    expect(s.verify(token, { audience: 'stack.v1.events.audit.recorded', at: storedAt })).toEqual(ctx);
    // Stored after it expired (republished later by whoever lifted it): refused.
    expect(codeOf(() => new CallerContextSigner(key, 60_000, () => now).verify(token, { audience: 'stack.v1.events.audit.recorded', at: storedAt + 61_000 }))).toBe('UNAUTHORIZED');
    expect(codeOf(() => s.verify(token, { audience: 'stack.v1.events.audit.recorded', at: Number.NaN }))).toBe('UNAUTHORIZED');
  });

  it('refuses a caller context that is not a string as UNAUTHORIZED', () => {
    const s = new CallerContextSigner(key);
    for (const bad of [42, { token: 'x' }, ['a.b.c'], true]) expect(codeOf(() => s.verify(bad))).toBe('UNAUTHORIZED');
  });

  it('refuses a short key', () => {
    expect(() => new CallerContextSigner(randomBytes(16))).toThrow(/32 bytes/);
  });
});
