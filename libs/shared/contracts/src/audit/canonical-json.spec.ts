import { AuditEntrySchema, AuditTargetSchema } from './audit-entry';
import { AUDIT_ENTRY_KEYS, AUDIT_TARGET_KEYS, canonicalAuditEntry, canonicalJson, type JsonValue } from './canonical-json';

describe('canonicalJson (RFC 8785)', () => {
  it('sorts keys by UTF-16 code units, at every depth (the RFC 8785 §3.2.3 example)', () => {
    const value = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    expect(canonicalJson(value)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    expect(canonicalJson({ b: [{ z: 1, a: 2 }], a: { d: null, c: true } })).toBe('{"a":{"c":true,"d":null},"b":[{"a":2,"z":1}]}');
  });

  it('writes numbers as ECMAScript does (RFC 8785 §3.2.2.3), and refuses the non-finite', () => {
    const numbers: [number, string][] = [
      [0, '0'],
      [-0, '0'],
      [1e21, '1e+21'],
      [1e-7, '1e-7'],
      [333333333.3333333, '333333333.3333333'],
      [5e-324, '5e-324'],
      [-1.5, '-1.5'],
      [9007199254740992, '9007199254740992'],
    ];
    for (const [n, text] of numbers) expect(canonicalJson(n)).toBe(text);
    expect(() => canonicalJson(Number.NaN)).toThrow(/non-finite/);
    expect(() => canonicalJson({ a: [Number.POSITIVE_INFINITY] })).toThrow(/non-finite/);
  });

  it('escapes strings as JSON does, leaving non-ASCII as it is', () => {
    expect(canonicalJson('a"b\\c\n\u0001\u007f\u00e9\u2028')).toBe('"a\\"b\\\\c\\n\\u0001\u007f\u00e9\u2028"');
    expect(canonicalJson(['', false, null])).toBe('["",false,null]');
    expect(canonicalJson({})).toBe('{}');
    expect(canonicalJson([])).toBe('[]');
  });

  it('leaves out keys whose value is undefined, and refuses undefined elsewhere', () => {
    expect(canonicalJson({ b: 1, a: undefined } as unknown as JsonValue)).toBe('{"b":1}');
    expect(() => canonicalJson([undefined] as unknown as JsonValue)).toThrow();
  });

  it('agrees with JSON.stringify of the key-sorted value on an audit entry', () => {
    const entry = { target: { path: '/repos/"x"', method: 'GET', host: 'api.github.com' }, outcome: 'success', id: 'aud_1', leaf_index: 7, duration_ms: 12, occurred_at: '2026-11-26T05:00:00.000Z' };
    const sorted = (v: unknown): unknown => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])])) : v);
    expect(canonicalJson(entry)).toBe(JSON.stringify(sorted(entry)));
  });
});

describe('canonicalAuditEntry', () => {
  const generic = (entry: Record<string, unknown>, leafIndex: number) => canonicalJson({ ...entry, leaf_index: leafIndex } as JsonValue);

  it('lists every key of the entry schema, sorted as RFC 8785 sorts them', () => {
    expect([...AUDIT_ENTRY_KEYS].sort()).toEqual([...AUDIT_ENTRY_KEYS]);
    expect([...AUDIT_ENTRY_KEYS]).toEqual(Object.keys(AuditEntrySchema.properties).sort());
    expect([...AUDIT_TARGET_KEYS].sort()).toEqual([...AUDIT_TARGET_KEYS]);
    expect([...AUDIT_TARGET_KEYS]).toEqual(Object.keys(AuditTargetSchema.properties).sort());
  });

  it('writes exactly what canonicalJson writes of {...entry, leaf_index}, for entries of every shape', () => {
    const awkward = ['', 'a"b\\c', '\n\u0001\u007f', '\u00e9\u2028\ud83d\ude00', 'x'.repeat(300), '\ud800'];
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pick = () => (rnd(3) === 0 ? awkward[rnd(awkward.length)]! : `v${rnd(1000)}`);
    for (let i = 0; i < 2000; i++) {
      const entry: Record<string, unknown> = { id: `aud_${i}xxxxxxxx`, occurred_at: '2026-11-26T05:00:00.000Z', operator_id: pick(), layer: 'proxy', action: 'credential.proxy', outcome: 'success' };
      for (const k of ['member_id', 'agent_id', 'client_id', 'passport_jti', 'session_id', 'error_code', 'trace_id']) if (rnd(2)) entry[k] = pick();
      if (rnd(2)) entry.duration_ms = rnd(100000);
      if (rnd(3)) {
        const target: Record<string, unknown> = {};
        for (const k of AUDIT_TARGET_KEYS) if (rnd(2)) target[k] = pick();
        if (rnd(4) === 0) target.method = undefined;
        entry.target = target;
      }
      if (rnd(5) === 0) entry.agent_id = undefined;
      const leafIndex = rnd(2 ** 20);
      expect(canonicalAuditEntry(entry, leafIndex)).toBe(generic(entry, leafIndex));
    }
  });

  it('hands an entry holding anything outside the schema to canonicalJson, with the same answer', () => {
    const base = { id: 'aud_xxxxxxxxxx', occurred_at: 'x', operator_id: 'op', layer: 'proxy', action: 'a.b', outcome: 'success' };
    for (const entry of [
      { ...base, extra: 'field' },
      { ...base, target: { service: 'github', other: 1 } },
      { ...base, target: { service: { nested: [1, 'two'] } } },
      { ...base, duration_ms: 1.5, member_id: null, client_id: true },
      { ...base, leaf_index: 99 },
      { ...base, target: ['not', 'an', 'object'] },
    ] as Record<string, unknown>[]) {
      expect(canonicalAuditEntry(entry, 3)).toBe(generic(entry, 3));
    }
    expect(() => canonicalAuditEntry({ ...base, duration_ms: Number.NaN }, 1)).toThrow(/non-finite/);
    expect(() => canonicalAuditEntry(base, Number.POSITIVE_INFINITY)).toThrow(/non-finite/);
  });
});
