import { Value } from '@sinclair/typebox/value';

import { AuditEntrySchema } from '@stack/contracts';

import { auditEventPayload, newAuditId } from './audit-recorder';

describe('newAuditId', () => {
  it('makes ids the entry schema accepts, unique, and sorting by the time they were made', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => newAuditId(1_764_000_000_000 + Math.floor(i / 10)));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids.slice(0, 50)) {
      expect(id).toMatch(/^aud_[0-9a-f]{12}[A-Za-z0-9_-]{16}$/);
      expect(Value.Check(AuditEntrySchema.properties.id, id)).toBe(true);
    }
    // Made in a later millisecond: later in byte order and in a locale's order alike.
    for (let i = 10; i < ids.length; i += 10) {
      expect(ids[i - 10]! < ids[i]!).toBe(true);
      expect(ids[i - 10]!.localeCompare(ids[i]!, 'en-US')).toBeLessThan(0);
    }
    expect(newAuditId(0).slice(4, 16)).toBe('000000000000');
    expect(newAuditId(0x19abcdef012).slice(4, 16)).toBe('019abcdef012');
  });

  it('is the id of an entry recorded without one', () => {
    const before = Date.now();
    const payload = auditEventPayload({ layer: 'proxy', action: 'credential.proxy', outcome: 'success', operator_id: 'op_1' });
    const at = parseInt(payload.id.slice(4, 16), 16);
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect(auditEventPayload({ layer: 'proxy', action: 'credential.proxy', outcome: 'success', id: 'aud_given_by_caller' }).id).toBe('aud_given_by_caller');
  });
});
