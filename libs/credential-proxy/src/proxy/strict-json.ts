/**
 * A JSON parser that refuses duplicate object keys. `JSON.parse` keeps the last of two equal keys
 * while other parsers keep the first, so a body like `{"repo":"ok","repo":"evil"}` could pass a
 * constraint here and mean something else upstream: refusing it removes the ambiguity.
 * Objects are built without a prototype, so `__proto__` is an ordinary key.
 */
export class DuplicateKeyError extends Error {
  constructor(readonly key: string) {
    super(`duplicate JSON key '${key}'`);
  }
}

// JSON strings may not hold raw control characters.
const CONTROL = /[\u0000-\u001f]/;
/** A number, true, false or null starting exactly at lastIndex (sticky). */
const LITERAL = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

export function parseStrictJson(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`invalid JSON at ${i}: ${what}`);
  };
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const str = (): string => {
    const start = i;
    // Most strings (a passport token is most of a proxy request) hold no escape: the closing quote
    // is the next one, and the characters between are the value once none is a control character.
    const close = text.indexOf('"', start + 1);
    if (close !== -1) {
      const raw = text.slice(start + 1, close);
      if (!raw.includes('\\') && !CONTROL.test(raw)) {
        i = close + 1;
        return raw;
      }
    }
    i++; // opening quote
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (depth: number): unknown => {
    if (depth > 128) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = Object.create(null) as Record<string, unknown>;
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const key = str();
        if (Object.prototype.hasOwnProperty.call(obj, key)) throw new DuplicateKeyError(key);
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        obj[key] = value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    LITERAL.lastIndex = i;
    const m = LITERAL.exec(text);
    if (!m) fail('unexpected token');
    i += m![0].length;
    const word = m![0];
    return word === 'true' ? true : word === 'false' ? false : word === 'null' ? null : Number(word);
  };
  const out = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return out;
}
