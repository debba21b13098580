import Ajv2020 from 'ajv/dist/2020';

import { StackError } from '@stack/contracts';

import { DropoffSchemas } from './dropoff-schema';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof StackError ? err.code : `not a StackError: ${(err as Error).message}`;
  }
};

const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

/** Schemas held by the Ajv instances a DropoffSchemas reaches (Ajv's own cache of compiled schemas). */
const heldByAjv = (s: DropoffSchemas): number => {
  const seen = new Set<unknown>();
  let held = 0;
  const visit = (v: unknown, depth: number): void => {
    if (typeof v !== 'object' || v === null || seen.has(v) || depth > 3) return;
    seen.add(v);
    if (v instanceof Ajv2020) {
      held += (v as unknown as { _cache: Map<unknown, unknown> })._cache.size;
      return;
    }
    for (const child of v instanceof Map ? v.values() : Object.values(v)) visit(child, depth + 1);
  };
  visit(s, 0);
  return held;
};

/** `$defs.d_i` refers twice to `d_{i+1}`: 2^levels subschemas expanded. */
const refBomb = (levels: number) => {
  const $defs: Record<string, unknown> = { [`d_${levels}`]: { type: 'integer' } };
  for (let i = 0; i < levels; i++) $defs[`d_${i}`] = { allOf: [{ $ref: `#/$defs/d_${i + 1}` }, { $ref: `#/$defs/d_${i + 1}` }] };
  return { $defs, $ref: '#/$defs/d_0' };
};

const schema = {
  type: 'object',
  required: ['report', 'count'],
  additionalProperties: false,
  properties: { report: { type: 'string', minLength: 1 }, count: { type: 'integer', minimum: 0 }, tags: { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' } } },
};

describe('drop-off schemas (hostile input)', () => {
  const s = new DropoffSchemas();

  it('accepts a valid draft 2020-12 schema and reports violations as JSON pointers', () => {
    const { validate } = s.prepare(schema);
    expect(s.check(validate, { report: 'ok', count: 3 })).toEqual([]);
    const bad = s.check(validate, { report: '', count: -1, tags: ['ok', 'NOT'], extra: 1 });
    const pointers = bad.map((v) => v.pointer).sort();
    expect(pointers).toEqual(['', '/count', '/report', '/tags/1'].sort());
    expect(bad.find((v) => v.pointer === '/count')).toMatchObject({ keyword: 'minimum', schema_pointer: '/properties/count/minimum' });
  });

  it('refuses what is not a schema, a schema of another draft, and an invalid one', () => {
    expect(codeOf(() => s.prepare('a string'))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare([1, 2]))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare(null))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ type: 'no-such-type' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ minLength: -3 }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare(true))).toBeUndefined();
  });

  it('refuses a schema over 64 KB', () => {
    const big = { type: 'object', description: 'x'.repeat(64 * 1024) };
    expect(codeOf(() => s.prepare(big))).toBe('INVALID_SCHEMA');
  });

  it('never fetches a remote $ref', () => {
    expect(codeOf(() => s.prepare({ $ref: 'https://169.254.169.254/latest/meta-data' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ $ref: 'file:///etc/passwd' }))).toBe('INVALID_SCHEMA');
    // A reference inside the schema is fine.
    expect(codeOf(() => s.prepare({ $defs: { n: { type: 'integer' } }, properties: { a: { $ref: '#/$defs/n' } } }))).toBeUndefined();
  });

  it('runs patterns on RE2: a catastrophic pattern answers at once, look-around is refused', () => {
    const { validate } = s.prepare({ type: 'string', pattern: '^(a+)+$' });
    const started = process.hrtime.bigint();
    expect(s.check(validate, `${'a'.repeat(50_000)}!`)).toHaveLength(1);
    // A backtracking engine takes longer than the age of the universe here; RE2 is linear.
    expect(Number(process.hrtime.bigint() - started) / 1e9).toBeLessThan(5);
    expect(codeOf(() => s.prepare({ type: 'string', pattern: '(?=a)a' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ type: 'string', pattern: '(a)\\1' }))).toBe('INVALID_SCHEMA');
  });

  it('gives each pattern its own matcher (one compiled pattern never stands in for another)', () => {
    const digits = s.prepare({ type: 'string', pattern: '^[0-9]+$' });
    const letters = s.prepare({ type: 'string', pattern: '^[a-z]+$' });
    expect(s.check(digits.validate, '123')).toEqual([]);
    expect(s.check(digits.validate, 'abc')).toHaveLength(1);
    expect(s.check(letters.validate, 'abc')).toEqual([]);
    expect(s.check(letters.validate, '123')).toHaveLength(1);
  });

  it('keeps two operators’ schemas with the same $id apart', () => {
    const a = s.prepare({ $id: 'https://example.com/report', type: 'string' });
    const b = s.prepare({ $id: 'https://example.com/report', type: 'integer' });
    expect(s.check(a.validate, 'x')).toEqual([]);
    expect(s.check(b.validate, 'x')).toHaveLength(1);
    expect(s.check(b.validate, 3)).toEqual([]);
  });

  it('caps the number of violations it reports', () => {
    const { validate } = s.prepare({ type: 'array', items: { type: 'integer' } });
    expect(s.check(validate, Array(500).fill('x')).length).toBe(50);
  });

  it('refuses a schema whose references fan out (2^23 subschemas in 1.5 KB), at once', () => {
    const bomb = refBomb(23);
    expect(JSON.stringify(bomb).length).toBeLessThan(2000);
    const started = process.hrtime.bigint();
    expect(codeOf(() => s.prepare(bomb))).toBe('INVALID_SCHEMA');
    expect(seconds(started)).toBeLessThan(1);
    // A few levels stay well inside the bound, and validate.
    const { validate } = s.prepare(refBomb(6));
    expect(s.check(validate, 3)).toEqual([]);
    expect(s.check(validate, 'x').length).toBeGreaterThan(0);
  });

  it('accepts a recursive schema: a tree node referring to itself, any JSON value', () => {
    const tree = {
      $defs: { node: { type: 'object', required: ['name'], properties: { name: { type: 'string' }, left: { $ref: '#/$defs/node' }, right: { $ref: '#/$defs/node' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } } } },
      $ref: '#/$defs/node',
    };
    const { validate } = s.prepare(tree);
    expect(s.check(validate, { name: 'a', left: { name: 'b' }, children: [{ name: 'c', children: [{ name: 'd' }] }] })).toEqual([]);
    expect(s.check(validate, { name: 'a', children: [{ name: 'c', children: [{ name: 1 }] }] }).map((v) => v.pointer)).toEqual(['/children/0/children/0/name']);
    const json = { $defs: { value: { $anchor: 'v', anyOf: [{ type: ['string', 'number', 'boolean', 'null'] }, { type: 'array', items: { $ref: '#v' } }, { type: 'object', additionalProperties: { $ref: '#v' } }] } }, $ref: '#v' };
    expect(s.check(s.prepare(json).validate, { a: [1, { b: null }] })).toEqual([]);
  });

  it('refuses recursion that never descends into the payload, or doubles at each level of it', () => {
    // Each level of [[[…]]] would be checked twice as often as the one above: 2^22 checks for 22 levels.
    expect(codeOf(() => s.prepare({ $defs: { a: { allOf: [{ items: { $ref: '#/$defs/a' } }, { items: { $ref: '#/$defs/a' } }] } }, $ref: '#/$defs/a' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ $defs: { a: { items: { anyOf: [{ $ref: '#/$defs/a' }, { items: { $ref: '#/$defs/a' } }] } } }, $ref: '#/$defs/a' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ $defs: { a: { anyOf: [{ type: 'string' }, { $ref: '#/$defs/b' }] }, b: { not: { $ref: '#/$defs/a' } } }, $ref: '#/$defs/a' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ $ref: '#' }))).toBe('INVALID_SCHEMA');
  });

  it('refuses an $id below the top, and a reference that leaves the schema', () => {
    expect(codeOf(() => s.prepare({ $defs: { x: { $id: 'https://example.com/leak', type: 'string' } }, $ref: 'https://example.com/leak' }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ type: 'object', 'x-meta': { $id: 'https://example.com/other' } }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ $ref: 'https://json-schema.org/draft/2020-12/schema' }))).toBe('INVALID_SCHEMA');
    // The top's own $id may name its subschemas, and a property named $id is only a property.
    const { validate } = s.prepare({ $id: 'https://example.com/top', $defs: { n: { type: 'integer' } }, properties: { $id: { type: 'string' }, n: { $ref: 'https://example.com/top#/$defs/n' } } });
    expect(s.check(validate, { $id: 'x', n: 1 })).toEqual([]);
    expect(s.check(validate, { n: 'one' }).map((v) => v.pointer)).toEqual(['/n']);
  });

  it('lets go of the validators it no longer keeps: Ajv holds at most the cache’s worth', () => {
    const fresh = new DropoffSchemas();
    const before = heldByAjv(fresh);
    for (let i = 0; i < 1500; i++) fresh.prepare({ type: 'object', properties: { [`p${i}`]: { type: 'string', minLength: i } } });
    expect(heldByAjv(fresh) - before).toBeLessThanOrEqual(600);
    // The newest are still kept, and still right.
    const { validate } = fresh.prepare({ type: 'object', properties: { p1499: { type: 'string', minLength: 1499 } } });
    expect(fresh.check(validate, { p1499: 'short' })).toHaveLength(1);
  });

  it('refuses uniqueItems over any items unless maxItems bounds it; scalar items need no bound', () => {
    expect(codeOf(() => s.prepare({ type: 'array', uniqueItems: true }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ type: 'array', uniqueItems: true, maxItems: 1001 }))).toBe('INVALID_SCHEMA');
    expect(codeOf(() => s.prepare({ type: 'object', properties: { list: { type: 'array', uniqueItems: true, items: { type: 'object' } } } }))).toBe('INVALID_SCHEMA');
    const pairs = Array.from({ length: 20_000 }, (_, i) => [i]);
    const bounded = s.prepare({ type: 'array', uniqueItems: true, maxItems: 1000 }).validate;
    let started = process.hrtime.bigint();
    // Refused by maxItems, not after comparing 200 million pairs.
    expect(s.check(bounded, pairs).map((v) => v.keyword)).toEqual(['maxItems']);
    expect(seconds(started)).toBeLessThan(1);
    expect(s.check(bounded, [[1], [2], [1]]).map((v) => v.keyword)).toEqual(['uniqueItems']);
    const strings = s.prepare({ type: 'array', uniqueItems: true, items: { type: 'string' } }).validate;
    started = process.hrtime.bigint();
    expect(s.check(strings, pairs.map(([i]) => `s${i}`))).toEqual([]);
    expect(seconds(started)).toBeLessThan(1);
    expect(s.check(strings, ['a', 'b', 'a']).map((v) => v.keyword)).toEqual(['uniqueItems']);
  });

  it('reports only the first violation when every one would cost too much', () => {
    const { validate } = s.prepare({ type: 'array', items: { allOf: Array.from({ length: 50 }, (_, i) => ({ type: 'string', minLength: i })) } });
    // 50 failing subschemas × 20,000 items: a million error objects to report 50.
    expect(s.check(validate, Array(20_000).fill(0))).toHaveLength(1);
    expect(s.check(validate, Array(10).fill(0))).toHaveLength(50);
  });

  it('refuses a payload too costly to check against its schema (413), at once, before validating it', () => {
    const zeros = Array(256_000).fill(0);
    // An allOf of 1,000 `{items}` (44 KB, no $ref) against a 256k-item array: 256 million checks.
    const allOf = s.prepare({ allOf: Array.from({ length: 1000 }, (_, i) => ({ items: { type: 'integer', minimum: -i } })) }).validate;
    let started = process.hrtime.bigint();
    let err: unknown;
    try {
      s.check(allOf, zeros);
    } catch (e) {
      err = e;
    }
    expect(seconds(started)).toBeLessThan(1);
    expect(err).toBeInstanceOf(StackError);
    expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringContaining('too costly to check against this schema') });
    // A large enum under items: every item compared with every entry.
    const enumSchema = s.prepare({ type: 'array', items: { enum: Array.from({ length: 5000 }, (_, i) => `value-${i}`) } }).validate;
    started = process.hrtime.bigint();
    expect(codeOf(() => s.check(enumSchema, Array(100_000).fill('nope')))).toBe('PAYLOAD_TOO_LARGE');
    expect(seconds(started)).toBeLessThan(1);
    // The same schemas still check a small payload.
    expect(s.check(allOf, [0, 1, 2])).toEqual([]);
    expect(s.check(enumSchema, ['value-7'])).toEqual([]);
  });

  it('accepts a realistic 512 KB payload under a schema of tens of subschemas', () => {
    const item = {
      type: 'object',
      required: ['id', 'name', 'qty'],
      additionalProperties: false,
      properties: { id: { type: 'string', pattern: '^[A-Z]+-[0-9]+$' }, name: { type: 'string', minLength: 1 }, qty: { type: 'integer', minimum: 0 }, price: { type: 'number' }, tags: { type: 'array', items: { enum: ['a', 'b', 'c', 'd'] } }, when: { type: 'string', format: 'date-time' } },
    };
    const { validate } = s.prepare({ type: 'object', required: ['rows'], additionalProperties: false, properties: { title: { type: 'string', maxLength: 200 }, rows: { type: 'array', items: { $ref: '#/$defs/item' } }, ids: { type: 'array', items: { type: 'integer', minimum: 0 } } }, $defs: { item } });
    const rows = Array.from({ length: 4000 }, (_, i) => ({ id: `AB-${i}`, name: 'widget', qty: i, price: 1.5, tags: ['a', 'c'], when: '2024-01-01T00:00:00Z' }));
    const payload = { title: 'stock', rows, ids: Array.from({ length: 20_000 }, (_, i) => i) };
    const bytes = JSON.stringify(payload).length;
    expect(bytes).toBeGreaterThan(450 * 1024);
    expect(bytes).toBeLessThan(512 * 1024);
    expect(s.check(validate, payload)).toEqual([]);
    // The cap's worth of small integers under a typed items: 256k values.
    expect(s.check(s.prepare({ type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 } }).validate, Array(256_000).fill(0))).toEqual([]);
    // A failing one still gets its violations.
    expect(s.check(validate, { ...payload, rows: [{ ...rows[0], qty: -1 }, ...rows.slice(1)] }).map((v) => v.pointer)).toEqual(['/rows/0/qty']);
  });
});
