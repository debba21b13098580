import Ajv2020 from 'ajv/dist/2020';

import { StackError } from '@stack/contracts';

import { DropoffSchemas } from './dropoff-schema';
import { patternRate } from './dropoff-schema-cost';
import { MAX_COMPILE_UNITS, MAX_DEPTH, MAX_RUN, patternSize } from './dropoff-schema-shape';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof StackError ? err.code : `not a StackError: ${(err as Error).message}`;
  }
};

const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

const errorOf = (fn: () => unknown): unknown => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err;
  }
};

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

/** An allOf of `n` `{items}` subschemas, no $ref. */
const allOfItems = (n: number) => ({ allOf: Array.from({ length: n }, (_, i) => ({ items: { type: 'integer', minimum: -i } })) });

/** A GitHub issue, much as its API publishes it: 526 subschemas with every `$ref` written out, 12 KB. */
const githubIssue = () => {
  const str = { type: 'string' };
  const uri = { type: 'string', format: 'uri' };
  const time = { type: 'string', format: 'date-time' };
  const int = { type: 'integer' };
  const bool = { type: 'boolean' };
  const nullable = (s: object) => ({ anyOf: [{ type: 'null' }, s] });
  const obj = (properties: Record<string, unknown>, required = Object.keys(properties)) => ({ type: 'object', properties, required, additionalProperties: false });
  const fields = (names: string, s: unknown) => Object.fromEntries(names.split(' ').map((n) => [n, s]));
  const user = { $ref: '#/$defs/simple-user' };
  const simpleUser = obj(
    { name: nullable(str), email: nullable(str), login: { type: 'string', minLength: 1, maxLength: 39, pattern: '^[A-Za-z0-9-]+$' }, id: int, gravatar_id: nullable(str), site_admin: bool, starred_at: time, ...fields('node_id following_url gists_url starred_url events_url type user_view_type', str), ...fields('avatar_url url html_url followers_url subscriptions_url organizations_url repos_url received_events_url', uri) },
    ['login', 'id', 'node_id', 'avatar_url', 'url', 'type', 'site_admin'],
  );
  const label = obj({ id: int, node_id: str, url: uri, name: str, description: nullable(str), color: { type: 'string', pattern: '^[0-9a-fA-F]{6}$' }, default: bool });
  const milestone = obj({ ...fields('url html_url labels_url', uri), ...fields('id number open_issues closed_issues', int), node_id: str, state: { enum: ['open', 'closed'] }, title: str, description: nullable(str), creator: nullable(user), created_at: time, updated_at: time, closed_at: nullable(time), due_on: nullable(time) });
  const repository = obj(
    {
      ...fields('id forks_count stargazers_count watchers_count size open_issues_count forks open_issues watchers network_count subscribers_count', int),
      ...fields('node_id name full_name git_url ssh_url default_branch visibility temp_clone_token master_branch starred_at archive_url assignees_url blobs_url branches_url collaborators_url comments_url commits_url compare_url contents_url git_commits_url git_refs_url git_tags_url issue_comment_url issue_events_url issues_url keys_url labels_url milestones_url notifications_url pulls_url releases_url statuses_url trees_url', str),
      ...fields('html_url url contributors_url deployments_url downloads_url events_url forks_url hooks_url languages_url merges_url stargazers_url subscribers_url subscription_url tags_url teams_url clone_url mirror_url svn_url homepage', nullable(uri)),
      ...fields('private fork has_issues has_projects has_wiki has_pages has_downloads has_discussions archived disabled allow_rebase_merge allow_squash_merge allow_auto_merge delete_branch_on_merge allow_update_branch use_squash_pr_title_as_default allow_merge_commit allow_forking web_commit_signoff_required is_template', bool),
      ...fields('pushed_at created_at updated_at', nullable(time)),
      description: nullable(str),
      language: nullable(str),
      license: nullable(obj({ key: str, name: str, url: nullable(uri), spdx_id: nullable(str), node_id: str, html_url: uri })),
      owner: user,
      permissions: obj({ admin: bool, pull: bool, triage: bool, push: bool, maintain: bool }, ['admin', 'pull', 'push']),
      topics: { type: 'array', items: str },
      squash_merge_commit_title: { enum: ['PR_TITLE', 'COMMIT_OR_PR_TITLE'] },
      squash_merge_commit_message: { enum: ['PR_BODY', 'COMMIT_MESSAGES', 'BLANK'] },
      merge_commit_title: { enum: ['PR_TITLE', 'MERGE_MESSAGE'] },
      merge_commit_message: { enum: ['PR_BODY', 'PR_TITLE', 'BLANK'] },
    },
    ['id', 'node_id', 'name', 'full_name', 'owner', 'private', 'html_url', 'url', 'created_at', 'updated_at'],
  );
  const app = obj({ id: int, slug: str, node_id: str, client_id: str, owner: user, name: str, description: nullable(str), external_url: uri, html_url: uri, created_at: time, updated_at: time, permissions: { type: 'object', properties: fields('issues checks metadata contents deployments', str), additionalProperties: str }, events: { type: 'array', items: str }, installations_count: int });
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $defs: { 'simple-user': simpleUser },
    ...obj(
      {
        ...fields('id number comments', int),
        ...fields('node_id labels_url state title body_html body_text', str),
        ...fields('url repository_url comments_url events_url html_url timeline_url', uri),
        state_reason: nullable({ enum: ['completed', 'reopened', 'not_planned', 'duplicate'] }),
        body: nullable(str),
        user: nullable(user),
        labels: { type: 'array', items: { oneOf: [str, label] } },
        assignee: nullable(user),
        assignees: nullable({ type: 'array', items: user }),
        milestone: nullable(milestone),
        locked: bool,
        active_lock_reason: nullable(str),
        pull_request: obj({ merged_at: nullable(time), ...fields('diff_url html_url patch_url url', nullable(uri)) }, ['diff_url', 'html_url', 'patch_url', 'url']),
        closed_at: nullable(time),
        created_at: time,
        updated_at: time,
        draft: bool,
        closed_by: nullable(user),
        repository,
        performed_via_github_app: nullable(app),
        author_association: { enum: ['COLLABORATOR', 'CONTRIBUTOR', 'FIRST_TIMER', 'FIRST_TIME_CONTRIBUTOR', 'MANNEQUIN', 'MEMBER', 'NONE', 'OWNER'] },
        reactions: obj({ url: uri, ...fields('total_count +1 -1 laugh confused heart hooray eyes rocket', int) }),
        sub_issues_summary: obj(fields('total completed percent_completed', int)),
      },
      ['id', 'node_id', 'url', 'repository_url', 'labels_url', 'comments_url', 'events_url', 'html_url', 'number', 'state', 'title', 'user', 'labels', 'assignee', 'milestone', 'locked', 'comments', 'created_at', 'updated_at'],
    ),
  };
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
    // An allOf of 300 `{items}` (13 KB, no $ref, inside the compile bound) against a 256k-item array: 77 million checks.
    const allOf = s.prepare(allOfItems(300)).validate;
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

  it('counts a pattern by what matching costs its program, so strings crafted against a pattern whose DFA blows up are refused (413), not matched for seconds', () => {
    // 127 RE2 instructions: on these strings RE2's DFA runs out of memory and its NFA takes ~12 µs a character.
    const slow = s.prepare({ type: 'array', items: { type: 'string', pattern: '^(?:\\p{L}|a)*a\\p{L}{120}$' } }).validate;
    const strings = Array(50).fill(`${'é'.repeat(1000)}!`);
    const started = process.hrtime.bigint();
    expect(codeOf(() => s.check(slow, strings))).toBe('PAYLOAD_TOO_LARGE');
    expect(seconds(started)).toBeLessThan(1);
    // The same through patternProperties, against keys.
    const keys = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${'é'.repeat(1000)}${i}`, 1]));
    expect(codeOf(() => s.check(s.prepare({ type: 'object', patternProperties: { '^(?:\\p{L}|a)*a\\p{L}{120}$': { type: 'integer' } } }).validate, keys))).toBe('PAYLOAD_TOO_LARGE');
    // A few such strings are still checked.
    expect(s.check(slow, ['é'.repeat(40)])).toEqual([expect.objectContaining({ keyword: 'pattern' })]);
    // Small programs (an id, an email) cost by length only: 10,000 emails are checked.
    const emails = s.prepare({ type: 'array', items: { type: 'string', pattern: '^[a-z0-9._-]+@[a-z0-9.-]+$' } }).validate;
    expect(s.check(emails, Array.from({ length: 10_000 }, (_, i) => `someone.${i}@example.com`))).toEqual([]);
    expect(patternRate('^[A-Z]+-[0-9]+$')).toBeLessThan(1);
    expect(patternRate('^(?:\\p{L}|a)*a\\p{L}{120}$')).toBeGreaterThan(100);
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

  it('refuses a schema too costly to compile (an allOf of 1,400 `{items}`, 62 KB: 3–4 s of compiling), at once, naming the bound', () => {
    const big = allOfItems(1400);
    expect(JSON.stringify(big).length).toBeLessThan(64 * 1024);
    const started = process.hrtime.bigint();
    const err = errorOf(() => s.prepare(big));
    expect(seconds(started)).toBeLessThan(1);
    expect(err).toMatchObject({ code: 'INVALID_SCHEMA', message: expect.stringContaining('too large to compile'), details: { limit_compile_units: MAX_COMPILE_UNITS } });
    // Just inside the bound, it compiles (about 0.1 s measured).
    const { validate } = s.prepare(allOfItems(360));
    expect(validate.shape.compile).toBeLessThanOrEqual(MAX_COMPILE_UNITS);
    expect(s.check(validate, [0, -1]).map((v) => v.pointer)).toEqual(['/1']);
  });

  it('refuses the other shapes slow to compile, whatever their size in bytes, naming the bound', () => {
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    const tooLarge = {
      // Each branch keeps its errors and tracks which passed: 1,000 took 1.2 s to compile, 2,000 overflowed the stack.
      oneOf: { oneOf: range(2000).map((i) => ({ const: i })) },
      // A thousand properties, each with its own pattern (RE2 compiles each).
      patterns: { type: 'object', properties: Object.fromEntries(range(1000).map((i) => [`p${i}`, { type: 'string', pattern: `^[a-z]{${i % 100}}x$` }])) },
      // One pattern of 165 bytes that RE2 compiles to 15,000 Unicode-class instructions.
      pattern: { type: 'string', pattern: '\\p{L}{1000}'.repeat(15) },
      // 2,000 blocks nested one in the other: Ajv compiled it, and the first deposit overflowed the stack.
      dependentRequired: { type: 'object', dependentRequired: Object.fromEntries(range(2000).map((i) => [`k${i}`, ['a', 'b']])) },
      // One schema referred to by 64 spellings of the same reference: Ajv compiles it once per spelling.
      spellings: (() => {
        const name = 'a$$$$$$';
        const spell = (i: number) => name.replace(/\$/g, (_, at: number) => ((i >> (at - 1)) & 1 ? '%24' : '$'));
        const target = { type: 'object', properties: { ...Object.fromEntries(range(40).map((i) => [`p${i}`, { type: 'string', minLength: 1 }])), next: { $ref: '#/$defs/b' } } };
        return { $defs: { [name]: target, b: { type: 'object', properties: { x: { $ref: '#/$defs/b' } } } }, type: 'object', properties: Object.fromEntries(range(64).map((i) => [`p${i}`, { $ref: `#/$defs/${spell(i)}` }])) };
      })(),
    };
    for (const [name, big] of Object.entries(tooLarge)) {
      expect(JSON.stringify(big).length).toBeLessThan(64 * 1024);
      expect([name, errorOf(() => s.prepare(big))]).toEqual([name, expect.objectContaining({ code: 'INVALID_SCHEMA', message: expect.stringContaining('too large to compile') })]);
    }
    let deep: object = { type: 'string' };
    for (let i = 0; i <= MAX_DEPTH; i++) deep = { type: 'array', items: deep };
    expect(errorOf(() => s.prepare(deep))).toMatchObject({ code: 'INVALID_SCHEMA', message: expect.stringContaining(`more than ${MAX_DEPTH} deep`), details: { limit_depth: MAX_DEPTH } });
    // 1,200 properties that are each `false`: little code, but each block inside the one before, and V8 overflowed its stack parsing about 1,500.
    const run = { type: 'object', properties: Object.fromEntries(range(1200).map((i) => [`p${i}`, false])) };
    expect(errorOf(() => s.prepare(run))).toMatchObject({ code: 'INVALID_SCHEMA', message: expect.stringContaining(`more than ${MAX_RUN} blocks`), details: { limit_run: MAX_RUN } });
    // A recursive schema is compiled once, as a function calling itself: its depth is the schema's, not the payload's.
    const { validate } = s.prepare({ $defs: { list: { type: 'array', items: { $ref: '#/$defs/list' } } }, $ref: '#/$defs/list' });
    let nested: unknown[] = [];
    for (let i = 0; i < 100; i++) nested = [nested];
    expect(s.check(validate, nested)).toEqual([]);
    // A long enum or required list is looped over, not written out.
    expect(codeOf(() => s.prepare({ enum: range(5000).map((i) => `value-${i}`) }))).toBeUndefined();
  });

  it('accepts large realistic schemas well inside the bound: a GitHub issue, 300 properties with arrays of objects', () => {
    const issue = s.prepare(githubIssue()).validate;
    expect(issue.shape.expanded).toBeGreaterThan(500);
    expect(issue.shape.compile).toBeLessThan(MAX_COMPILE_UNITS * 0.75);
    expect([...new Set(s.check(issue, { id: 1 }).map((v) => v.keyword))]).toEqual(['required']);
    const kinds = [
      { type: 'string' },
      { type: 'integer', minimum: 0 },
      { type: 'boolean' },
      { type: 'string', format: 'date-time' },
      { anyOf: [{ type: 'null' }, { type: 'string', maxLength: 255 }] },
      { enum: ['low', 'medium', 'high'] },
      { type: 'array', items: { type: 'object', required: ['id'], properties: { id: { type: 'integer' }, name: { type: 'string' } } } },
      { type: 'object', properties: { x: { type: 'number' }, y: { type: 'number' } } },
    ];
    const wide = s.prepare({ type: 'object', additionalProperties: false, properties: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`field_${i}`, kinds[i % kinds.length]])) }).validate;
    expect(wide.shape.compile).toBeLessThan(MAX_COMPILE_UNITS * 0.7);
    expect(s.check(wide, { field_0: 'a', field_6: [{ id: 1 }, { name: 'x' }] }).map((v) => v.pointer)).toEqual(['/field_6/1']);
  });

  it('sizes a pattern by what RE2 compiles it to: every atom times the repetitions around it', () => {
    expect(patternSize('^[a-z]+$')).toBe(8);
    expect(patternSize('^[0-9a-f]{64}$')).toBe(2 + 8 * 64);
    expect(patternSize('\\p{L}{1000}')).toBe(5000);
    expect(patternSize('(?:ab{3}){10}')).toBe(10 * (2 + 1 + 3 + 2));
    // Unclosed groups and classes, stray braces: counted, never thrown on.
    expect(patternSize('([a-')).toBeGreaterThan(0);
    expect(patternSize('a{,5}{')).toBe(6);
  });
});
