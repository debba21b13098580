import { StackError, type CallerContext } from '@stack/contracts';

import { mergeConstraints, requireOperator } from './passport.service';

describe('passport rules', () => {
  it('merges constraints without duplicates and checks each one', () => {
    const host = { path: 'url.host', op: 'eq' as const, value: 'api.github.com' };
    expect(mergeConstraints('scon_1', [host, { ...host }, { path: 'method', op: 'in', value: ['GET'] }])).toEqual([host, { path: 'method', op: 'in', value: ['GET'] }]);
    expect(() => mergeConstraints('scon_1', [{ path: 'method', op: 'in', value: 'GET' }])).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => mergeConstraints('scon_1', [{ path: 'method', op: 'eq', value: ['GET'] }])).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => mergeConstraints('scon_1', [{ path: 'url.pathname', op: 'matches', value: 'a'.repeat(257) }])).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    const many = Array.from({ length: 33 }, (_, i) => ({ path: `query.k${i}`, op: 'eq' as const, value: 'v' }));
    expect(() => mergeConstraints('scon_1', many)).toThrow(StackError);
    expect(mergeConstraints('scon_1', many.slice(0, 32))).toHaveLength(32);
  });

  it('needs an operator and the scope; a member or agent with no scopes has no rights (a service acting for itself needs none)', () => {
    const caller: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_1', scopes: [] };
    expect(() => requireOperator(caller, 'stack:admin')).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(() => requireOperator(caller, 'stack:passports')).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(() => requireOperator({ ...caller, kind: 'agent' }, 'stack:passports')).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(requireOperator({ ...caller, issuer: 'passport', kind: 'system' }, 'stack:admin')).toBe('op_1');
    expect(() => requireOperator({ ...caller, operator_id: undefined }, 'stack:passports')).toThrow(expect.objectContaining({ code: 'UNAUTHORIZED' }));
    expect(() => requireOperator({ ...caller, scopes: ['stack:passports'] }, 'stack:admin')).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(requireOperator({ ...caller, scopes: ['stack:passports'] }, 'stack:passports')).toBe('op_1');
  });
});
