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
});
