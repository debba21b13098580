import { DuplicateKeyError, parseStrictJson, UnsafeNumberError } from './strict-json';

/** JSON.parse's answer with every object rebuilt without a prototype, as the strict parser builds them. */
function reference(text: string): unknown {
  const bare = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(bare);
    if (v && typeof v === 'object') {
      const o = Object.create(null) as Record<string, unknown>;
      for (const [k, x] of Object.entries(v)) o[k] = bare(x);
      return o;
    }
    return v;
  };
  return bare(JSON.parse(text));
}

describe('parseStrictJson', () => {
  it('reads what JSON.parse reads: escapes, unicode, numbers, nesting, whitespace', () => {
    const texts = [
      '{"a":"plain","b":"esc\\"aped\\\\ \\n \\t \\u00e9 \\ud83d\\ude00","c":"é😀 / \\/"}',
      ' [ 0 , -0 , 1.5e3 , -2E-2 , 9007199254740991 , -9007199254740991 , 1e-400 , true , false , null ] ',
      '{"nested":{"deep":[{"x":[[],{}]},"",""]},"empty":{},"list":[]}',
      '"just a string"',
      '{"token":"' + 'eyJhbGciOiJFZERTQSJ9'.repeat(80) + '","k":"\\u0000\\u001f"}',
      '{"__proto__":{"polluted":true},"constructor":"x"}',
    ];
    for (const text of texts) expect(parseStrictJson(text)).toEqual(reference(text));
    expect(Object.getPrototypeOf(parseStrictJson('{}'))).toBeNull();
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('agrees with JSON.parse on random documents', () => {
    let seed = 11;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pieces = ['a', 'é', '"', '\\', '\n', '\u0001', '😀', '/', ' ', 'z'];
    const randomString = () => Array.from({ length: rnd(12) }, () => pieces[rnd(pieces.length)]).join('');
    const randomValue = (depth: number): unknown => {
      const k = rnd(depth > 3 ? 4 : 6);
      if (k === 0) return randomString();
      if (k === 1) return (rnd(2) ? -1 : 1) * rnd(100000) / (rnd(3) ? 1 : 7);
      if (k === 2) return [true, false, null][rnd(3)];
      if (k === 3) return rnd(2) ? randomString() : rnd(1000);
      if (k === 4) return Array.from({ length: rnd(4) }, () => randomValue(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = rnd(5); i > 0; i--) o[`${randomString()}${i}`] = randomValue(depth + 1);
      return o;
    };
    for (let n = 0; n < 1000; n++) {
      const text = JSON.stringify(randomValue(0), null, rnd(2) ? 1 : undefined);
      expect(parseStrictJson(text)).toEqual(reference(text));
    }
  });

  it('refuses a duplicate key at any depth, spelled differently or not', () => {
    expect(() => parseStrictJson('{"repo":"ok","repo":"evil"}')).toThrow(DuplicateKeyError);
    expect(() => parseStrictJson('{"a":{"b":1,"\\u0062":2}}')).toThrow(DuplicateKeyError);
    expect(() => parseStrictJson('[{"x":1},{"y":[{"k":1,"k":1}]}]')).toThrow("duplicate JSON key 'k'");
  });

  it('refuses a number that would not be forwarded exactly: not finite, or beyond ±Number.MAX_SAFE_INTEGER', () => {
    for (const bad of ['12345678901234567890', '{"id":12345678901234567890,"f":1e400}', '1e400', '-1e400', '[9007199254740992]', '-9007199254740993', '1e20', '1.5e300', '9'.repeat(100), '{"a":[1,{"b":12345678901234567890123}]}']) {
      expect(() => parseStrictJson(bad)).toThrow(UnsafeNumberError);
    }
    expect(() => parseStrictJson('{"id":12345678901234567890}')).toThrow('JSON number (12345678901234567890) that is not finite or lies beyond ±9007199254740991: it would not be forwarded exactly (send it as a string)');
    expect(() => parseStrictJson(`[${'9'.repeat(100)}]`)).toThrow(/JSON number \(9{32}…\)/);
    for (const ok of ['9007199254740991', '-9007199254740991', '1.5', '0.1', '-0', '1e-400', '123456789.123456789', '{"id":"12345678901234567890"}']) {
      expect(parseStrictJson(ok)).toEqual(reference(ok));
    }
  });

  it('refuses what is not JSON', () => {
    for (const bad of ['', '{', '{"a":1,}', '{"a" 1}', '[1 2]', '"unterminated', '"raw\ncontrol"', '"tab\there"', '01', '+1', '1.', '.5', 'NaN', 'undefined', "{'a':1}", '{"a":1} x', '{"a":tru}', '"bad \\x escape"']) {
      expect(() => parseStrictJson(bad)).toThrow(SyntaxError);
    }
    expect(() => parseStrictJson('['.repeat(200) + ']'.repeat(200))).toThrow(/nested too deeply/);
  });
});
