/**
 * A JSON parser that refuses duplicate object keys. `JSON.parse` keeps the last of two equal keys
 * while other parsers keep the first, so a body like `{"repo":"ok","repo":"evil"}` could pass a
 * constraint here and mean something else upstream: refusing it removes the ambiguity.
 * Numbers that a double cannot hold exactly enough to forward (not finite, or beyond
 * ±Number.MAX_SAFE_INTEGER) are refused too: re-serialised they would not be what the caller sent.
 * Objects are built without a prototype, so `__proto__` is an ordinary key.
 */
export class DuplicateKeyError extends Error {
  constructor(readonly key: string) {
    super(`duplicate JSON key '${key}'`);
  }
}

export class UnsafeNumberError extends Error {
  constructor(readonly text: string) {
    const shown = text.length > 32 ? `${text.slice(0, 32)}…` : text;
    super(`JSON number (${shown}) that is not finite or lies beyond ±${Number.MAX_SAFE_INTEGER}: it would not be forwarded exactly (send it as a string)`);
  }
}

/** Finite and within ±MAX_SAFE_INTEGER: past it every double is an integer and neighbouring integers share one. */
export function isExactNumber(n: number): boolean {
  return Number.isFinite(n) && Math.abs(n) <= Number.MAX_SAFE_INTEGER;
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
    if (word === 'true') return true;
    if (word === 'false') return false;
    if (word === 'null') return null;
    const n = Number(word);
    if (!isExactNumber(n)) throw new UnsafeNumberError(word);
    return n;
  };
  const out = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return out;
}
