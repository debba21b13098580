import { classifyDocument, graphqlAccess } from './graphql-operations';

const kind = (doc: string) => classifyDocument(doc).kind;
const fields = (doc: string) => classifyDocument(doc).mutationFields;

describe('classifyDocument', () => {
  it('reads queries, the `{ … }` shorthand and several of them', () => {
    expect(kind('{ viewer { id } }')).toBe('read');
    expect(kind('query { viewer { id } }')).toBe('read');
    expect(kind('query Me($first: Int = 10, $f: IssueFilter = { state: { eq: "}" } }) @cached(ttl: 60) { viewer { issues(first: $first, filter: $f) { nodes { id } } } }')).toBe('read');
    expect(kind('query A { a } query B { b } { c }')).toBe('read');
    expect(kind('query mutation { mutation }')).toBe('read');
  });

  it('finds a mutation or a subscription anywhere among the definitions', () => {
    expect(classifyDocument('mutation { issueDelete(id: "1") { success } }')).toEqual({ kind: 'write', mutationFields: ['issueDelete'] });
    expect(kind('query Q { a } mutation M { b }')).toBe('write');
    expect(kind('{ a } subscription { issueUpdated { id } }')).toBe('write');
    expect(classifyDocument('subscription { a }').mutationFields).toBeUndefined();
  });

  it('a mutation inside a string, a block string or a comment is not a mutation', () => {
    expect(kind('query { search(q: "mutation { issueDelete(id: 1) }") { id } }')).toBe('read');
    expect(kind('query { search(q: "\\" } mutation { x } \\"") { id } }')).toBe('read');
    expect(kind('query { search(q: """\n mutation { x }\n""") { id } }')).toBe('read');
    expect(kind('query { search(q: """ \\""" } mutation { x } """) { id } }')).toBe('read');
    expect(kind('# mutation { issueDelete }\nquery { a }')).toBe('read');
    expect(kind('query { a # } mutation { b }\n}')).toBe('read');
  });

  it('what ends a string or a comment ends it: what follows is read', () => {
    // A comment ends at \r as well as \n.
    expect(kind('# just a comment\rmutation { b }')).toBe('write');
    // `\\` is an escaped backslash: the string closes on the quote after it.
    expect(kind('query { a(s: "\\\\") } mutation { b }')).toBe('write');
    // `\"""` does not close a block string; `"""` does.
    expect(kind('query { a(s: """ \\""" """) } mutation { b }')).toBe('write');
    expect(kind('query { a(s: """""") } mutation { b }')).toBe('write');
    expect(kind('query { a(s: "") } mutation { b }')).toBe('write');
  });

  it('`mutation` as a field, alias, argument, name or fragment name is not an operation', () => {
    expect(kind('{ mutation }')).toBe('read');
    expect(kind('query { mutation { id } subscription }')).toBe('read');
    expect(kind('query { mutation: viewer { id } }')).toBe('read');
    expect(kind('query { a(mutation: mutation, subscription: "x") }')).toBe('read');
    expect(kind('query mutation { a }')).toBe('read');
    expect(kind('fragment mutation on Query { a } query { ...mutation }')).toBe('read');
  });

  it('keywords are case-sensitive: `MUTATION` and `Mutation` are names, and no operation opens with one', () => {
    expect(kind('query { MUTATION Mutation }')).toBe('read');
    expect(kind('{ a(type: Mutation) }')).toBe('read');
    expect(kind('MUTATION { issueDelete(id: "1") { success } }')).toBe('unknown');
    expect(kind('Mutation { a }')).toBe('unknown');
    expect(kind('Query { a }')).toBe('unknown');
  });

  it('commas, tabs, line breaks and a byte-order mark are separators', () => {
    expect(kind('query{a},mutation{b}')).toBe('write');
    expect(kind(',,,mutation,,{,b,}')).toBe('write');
    expect(kind('\uFEFF\tquery\r\n{\ta\t}\r\n\tmutation\n{b}')).toBe('write');
    expect(kind('{a}mutation{b}')).toBe('write');
  });

  it('a description before an operation or fragment is read past, not mistaken for the operation', () => {
    expect(kind('"mutation { a }" query { a }')).toBe('read');
    expect(kind('"""\nmutation { a }\n""" fragment F on T { a } { ...F }')).toBe('read');
    expect(kind('"a query" mutation { a }')).toBe('write');
    expect(kind('"shorthand" { a }')).toBe('unknown');
    expect(kind('"x" "y" query { a }')).toBe('unknown');
  });

  it('fragment definitions do not count, whatever type they are on', () => {
    expect(kind('fragment F on Mutation { issueDelete(id: "1") { success } } query { ...F }')).toBe('read');
    expect(kind('query { ...F } fragment F on Issue { id }')).toBe('read');
  });

  it('names the root fields of a mutation, through aliases, arguments, directives and sub-selections', () => {
    expect(fields('mutation { issueCreate: issueDelete(id: "1") { success } }')).toEqual(['issueDelete']);
    expect(fields('mutation M($in: IssueCreateInput!) @x(y: { z: [1, "}"] }) { a: issueCreate(input: $in) @include(if: true) { issue { id } } commentCreate(input: { body: ")" }) { success } }')).toEqual(['issueCreate', 'commentCreate']);
    expect(fields('mutation { a } mutation { b }')).toEqual(['a', 'b']);
    // A fragment hides the root fields.
    expect(classifyDocument('mutation { ...F } fragment F on Mutation { a }')).toEqual({ kind: 'write' });
    expect(classifyDocument('mutation { ... on Mutation { a } }')).toEqual({ kind: 'write' });
    expect(classifyDocument('mutation { a } subscription { b }')).toEqual({ kind: 'write' });
  });

  it('what it cannot read is unknown (a write for the scope rules)', () => {
    for (const doc of [
      '',
      '   # nothing but a comment',
      'fragment F on Query { a }',
      'type Query { a: Int }',
      'extend schema { mutation: M }',
      '"description" type Query { a: Int }',
      'schema { query: Q mutation: M }',
      'query { a ',
      'query { a } }',
      'query { a ) mutation { b }',
      'query { a(b: [1 }) ] } mutation { c }',
      'query { a(s: "unterminated) } mutation { b }',
      'query { a(s: "line\nbreak") } mutation { b }',
      'query { a(s: "bad \\x escape") }',
      'query { a(s: """never closed ) } mutation { b }',
      'query { a(n: 01) }',
      'query { a(n: 1.) }',
      'query { a(n: 1x) }',
      'query { a.b }',
      'query { a } ; mutation { b }',
      'query { \u00e9 }',
      'query\u00a0{ a }',
      'mutation { }',
      'mutation',
      'query Q',
      'query Q ($a: Int',
      'fragment on on T { a }',
      'fragment F T { a }',
    ]) {
      expect([doc, kind(doc)]).toEqual([doc, 'unknown']);
    }
  });

  it('reads large documents in linear time', () => {
    const big = `query { ${'a(s: "x \\" y") { b } '.repeat(50_000)} }`;
    const started = Date.now();
    expect(kind(big)).toBe('read');
    expect(kind(`${big} mutation { z }`)).toBe('write');
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('graphqlAccess', () => {
  const post = (json: unknown, query: Array<[string, string]> = []) => graphqlAccess({ method: 'POST', query, json, body: Buffer.from(JSON.stringify(json)) });

  it('reads a request only when every document it carries is query-only', () => {
    expect(post({ query: '{ a }', operationName: null, variables: { x: 1 }, extensions: {} })).toEqual({ kind: 'read' });
    expect(post([{ query: '{ a }' }, { query: 'query { b }' }])).toEqual({ kind: 'read' });
    expect(post([{ query: '{ a }' }, { query: 'mutation { b }' }])).toEqual({ kind: 'write', mutationFields: ['b'] });
    expect(post({ query: '{ a }' }, [['query', 'mutation { b }']])).toEqual({ kind: 'write', mutationFields: ['b'] });
    expect(graphqlAccess({ method: 'GET', query: [['query', '{ a }'], ['operationName', 'A'], ['variables', '{}']] })).toEqual({ kind: 'read' });
  });

  it('fails closed on anything else', () => {
    const write = { kind: 'write' };
    expect(graphqlAccess({ method: 'GET', query: [] })).toEqual(write);
    expect(graphqlAccess({ method: 'GET', query: [['id', 'persisted-1']] })).toEqual(write);
    expect(graphqlAccess({ method: 'POST', query: [], body: Buffer.from('{ a }') })).toEqual(write);
    expect(graphqlAccess({ method: 'DELETE', query: [['query', '{ a }']] })).toEqual(write);
    expect(post({ query: ['{ a }'] })).toEqual(write);
    expect(post({ query: '{ a }', extensions: { persistedQuery: { sha256Hash: 'ab' } } })).toEqual(write);
    expect(post({ query: '{ a }', extensions: 'x' })).toEqual(write);
    expect(post({ query: '{ a }', doc_id: '1' })).toEqual(write);
    expect(post([{ query: '{ a }' }, 'mutation { b }'])).toEqual(write);
    expect(post([{ query: '{ a }' }, [{ query: '{ b }' }]])).toEqual(write);
    expect(post('{ a }')).toEqual(write);
    expect(post(null)).toEqual(write);
    expect(post([{ query: '{ a }' }, { query: 'query { b' }])).toEqual(write);
  });
});
