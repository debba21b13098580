import { canonicalJson, type JsonValue } from './canonical-json';

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
