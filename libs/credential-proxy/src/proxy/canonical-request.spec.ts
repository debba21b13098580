import type { Constraint } from '@stack/contracts';

import { canonicalise, requestTarget } from './canonical-request';
import { enforceConstraints, holds } from './constraints';
import { scrub, trimSecretPrefixTail } from './credential-injection';

const base = new URL('https://api.github.com');
const gitlab = new URL('https://gitlab.com/api/v4');

describe('canonical request', () => {
  it('resolves dot segments, also percent-encoded ones, before anything checks the path', () => {
    expect(canonicalise({ method: 'GET', path: '/repos/acme/app/../../admin' }, base).pathname).toBe('/repos/admin');
    expect(canonicalise({ method: 'GET', path: '/repos/acme/app/%2e%2e/%2E%2E/admin' }, base).pathname).toBe('/repos/admin');
    expect(canonicalise({ method: 'GET', url: 'https://api.github.com/repos/acme/app/%2e%2e/secret' }, base).pathname).toBe('/repos/acme/secret');
  });

  it('refuses an encoded slash, a double encoding and a climb above the root or the base path', () => {
    expect(() => canonicalise({ method: 'GET', path: '/repos/acme%2fother/app' }, base)).toThrow(/encoded separator/);
    expect(() => canonicalise({ method: 'GET', path: '/repos/%252e%252e/admin' }, base)).toThrow(/encoded more than once/);
    expect(() => canonicalise({ method: 'GET', path: '/../../etc' }, base)).toThrow(/climbs/);
    expect(() => canonicalise({ method: 'GET', path: '/../../admin' }, gitlab)).toThrow(/climbs/);
  });

  it('decodes once and forwards exactly the canonical form', () => {
    const req = canonicalise({ method: 'get', path: '/repos/a%20b/x', query: { q: 'is:open' } }, base);
    expect(req.method).toBe('GET');
    expect(req.pathname).toBe('/repos/a b/x');
    expect(requestTarget(req)).toBe('/repos/a%20b/x?q=is%3Aopen');
    expect(canonicalise({ method: 'GET', path: '/projects' }, gitlab).encodedPath).toBe('/api/v4/projects');
  });

  it('refuses duplicate query keys, in the URL or between URL and query', () => {
    expect(() => canonicalise({ method: 'GET', path: '/search?q=a&q=b' }, base)).toThrow(/duplicate query key 'q'/);
    expect(() => canonicalise({ method: 'GET', path: '/search?q=a', query: { q: 'b' } }, base)).toThrow(/duplicate query key/);
    expect(() => canonicalise({ method: 'GET', path: '/search?%71=a&q=b' }, base)).toThrow(/duplicate query key/);
  });

  it('refuses duplicate JSON keys in a string body, at any depth', () => {
    expect(() => canonicalise({ method: 'POST', path: '/x', body: '{"repo":"ok","repo":"evil"}' }, base)).toThrow(/duplicate JSON key 'repo'/);
    expect(() => canonicalise({ method: 'POST', path: '/x', body: '{"a":{"b":1,"b":2}}' }, base)).toThrow(/duplicate JSON key 'b'/);
    const ok = canonicalise({ method: 'POST', path: '/x', body: '{"a":{"b":1},"c":[1,2]}' }, base);
    expect(ok.body?.toString()).toBe('{"a":{"b":1},"c":[1,2]}');
  });

  it('drops caller auth, cookies, Host and hop-by-hop headers; refuses duplicate names and CRLF', () => {
    const req = canonicalise({ method: 'GET', path: '/', headers: { Authorization: 'Bearer stolen', Cookie: 'a=b', Host: 'evil.test', 'X-Forwarded-For': '1.2.3.4', Accept: 'application/json' } }, base);
    expect(req.headers).toEqual({ accept: 'application/json' });
    expect(() => canonicalise({ method: 'GET', path: '/', headers: { Accept: 'a', accept: 'b' } }, base)).toThrow(/duplicate header/);
    expect(() => canonicalise({ method: 'GET', path: '/', headers: { 'x-a': 'v\r\nHost: evil' } }, base)).toThrow(/forbidden character/);
  });

  it('refuses URLs with credentials, fragments or other schemes', () => {
    expect(() => canonicalise({ method: 'GET', url: 'https://user:pw@api.github.com/' }, base)).toThrow(/credentials/);
    expect(() => canonicalise({ method: 'GET', url: 'file:///etc/passwd' }, base)).toThrow(/http and https/);
    expect(() => canonicalise({ method: 'GET', url: 'https://api.github.com/', path: '/' }, base)).toThrow(/exactly one/);
  });

  it('refuses a dot segment with parameters (`..;`, `.;x`, also percent-encoded), which `;params`-stripping servers resolve', () => {
    for (const path of ['/repos/acme/app/..;/..;/admin', '/repos/acme/..;jsessionid=x/other', '/repos/acme/%2e%2e%3b/other', '/repos/acme/%2E%2E;/other', '/repos/.;x/acme', '/..;/admin']) {
      expect(() => canonicalise({ method: 'GET', path }, base)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST', message: 'path has a dot segment with parameters' }));
    }
    expect(() => canonicalise({ method: 'GET', url: 'https://api.github.com/repos/acme/app/..;/x' }, base)).toThrow(/dot segment with parameters/);
    // `;` elsewhere is an ordinary character; `...;` is not a dot segment.
    expect(canonicalise({ method: 'GET', path: '/repos/acme/a;b/x' }, base).pathname).toBe('/repos/acme/a;b/x');
    expect(canonicalise({ method: 'GET', path: '/repos/acme/...;/x' }, base).pathname).toBe('/repos/acme/...;/x');
    // Forwarded as %3B: a `;params`-stripping server cannot route it to a path the checks never saw.
    expect(requestTarget(canonicalise({ method: 'GET', path: '/rest/api/3/project;x/KEY' }, base))).toBe('/rest/api/3/project%3Bx/KEY');
    expect(requestTarget(canonicalise({ method: 'GET', path: '/rest/api/3/project%3bx/KEY' }, base))).toBe('/rest/api/3/project%3Bx/KEY');
  });

  it('drops method and URL override headers, which would let an upstream act on another method or path', () => {
    const headers = { 'X-HTTP-Method-Override': 'DELETE', 'X-HTTP-Method': 'DELETE', 'X-Method-Override': 'DELETE', 'X-Original-URL': '/admin', 'X-Rewrite-URL': '/admin', Accept: 'application/json' };
    expect(canonicalise({ method: 'POST', path: '/repos/acme/app/issues', headers, body: { title: 'x' } }, base).headers).toEqual({ accept: 'application/json', 'content-type': 'application/json' });
  });

  it('reads a body as JSON when it looks like JSON, whatever its content type says', () => {
    const dup = '{"name":"prod","name":"x"}';
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', ' application/json', 'APPLICATION/JSON; charset=utf-8', 'application/octet-stream']) {
      expect(() => canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': type }, body: dup }, base)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST', message: "duplicate JSON key 'name'" }));
      expect(() => canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': type }, body: ` \n[${dup}]` }, base)).toThrow(/duplicate JSON key 'name'/);
      const req = canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': type }, body: ' {"name":"prod"}' }, base);
      expect(req.json).toEqual(Object.assign(Object.create(null), { name: 'prod' }));
      expect(req.body?.toString()).toBe('{"name":"prod"}');
    }
    // A JSON label with a leading space or capitals is still a JSON label: what is not JSON is refused.
    expect(() => canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': ' Application/JSON' }, body: 'name=prod' }, base)).toThrow(/not valid JSON/);
    // Another label on what is not JSON: forwarded as it is, unread.
    const form = canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=prod' }, base);
    expect([form.json, form.body?.toString()]).toEqual([undefined, 'name=prod']);
    const doc = canonicalise({ method: 'POST', path: '/graphql', headers: { 'content-type': 'application/graphql' }, body: '{ viewer { id } }' }, base);
    expect([doc.json, doc.body?.toString()]).toEqual([undefined, '{ viewer { id } }']);
  });

  it('refuses a JSON number that would not be forwarded exactly (not finite, or an integer past 2^53)', () => {
    const unsafe = expect.objectContaining({ code: 'INVALID_REQUEST', message: expect.stringMatching(/^the body has a JSON number \(.+\) that is not finite or lies beyond ±9007199254740991/) });
    expect(() => canonicalise({ method: 'POST', path: '/x', body: '{"id":12345678901234567890,"f":1e400}' }, base)).toThrow(unsafe);
    expect(() => canonicalise({ method: 'POST', path: '/x', body: '{"f":1e400}' }, base)).toThrow(unsafe);
    expect(() => canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': 'text/plain' }, body: '[9007199254740993]' }, base)).toThrow(unsafe);
    // Already parsed (the bus, the REST envelope): the same rule.
    expect(() => canonicalise({ method: 'POST', path: '/x', body: { a: [{ f: Infinity }] } }, base)).toThrow(unsafe);
    expect(() => canonicalise({ method: 'POST', path: '/x', body: { id: 2 ** 60 } }, base)).toThrow(unsafe);
    expect(() => canonicalise({ method: 'GET', path: '/x', query: { id: 2 ** 60 } }, base)).toThrow(/would not be forwarded exactly/);
    const ok = canonicalise({ method: 'POST', path: '/x', body: '{"id":9007199254740991,"n":-9007199254740991,"f":1.5,"e":1e3}' }, base);
    expect(ok.body?.toString()).toBe('{"id":9007199254740991,"n":-9007199254740991,"f":1.5,"e":1000}');
  });
});

describe('constraints on the canonical request', () => {
  const pathRule: Constraint = { path: 'url.pathname', op: 'starts_with', value: '/repos/acme/' };

  it('a %2e%2e trick cannot escape a path constraint', () => {
    const req = canonicalise({ method: 'GET', path: '/repos/acme/%2e%2e/other/secrets' }, base);
    expect(req.pathname).toBe('/repos/other/secrets');
    expect(() => enforceConstraints([pathRule], req)).toThrow(expect.objectContaining({ code: 'CONSTRAINT_VIOLATION' }));
  });

  it('refuses, unchecked, a value too long to check against a pattern whose DFA blows up; a long value against a cheap pattern is checked', () => {
    // Crafted for the pattern: RE2's DFA runs out of memory and it takes ~12 µs a character.
    const slow: Constraint = { path: 'body.title', op: 'matches', value: '(?:\\p{L}|a)*a\\p{L}{120}' };
    const long = canonicalise({ method: 'POST', path: '/repos/acme/app/issues', body: { title: `${'é'.repeat(100_000)}!` } }, base);
    const started = process.hrtime.bigint();
    expect(() => enforceConstraints([slow], long)).toThrow(expect.objectContaining({ code: 'CONSTRAINT_VIOLATION', details: expect.objectContaining({ reason: 'too_costly_to_check' }) }));
    expect(Number(process.hrtime.bigint() - started) / 1e9).toBeLessThan(0.5);
    // The same pattern on a short value is matched as usual.
    const short = canonicalise({ method: 'POST', path: '/repos/acme/app/issues', body: { title: `${'é'.repeat(120)}a${'é'.repeat(120)}` } }, base);
    expect(() => enforceConstraints([slow], short)).not.toThrow();
    // A cheap (one-pass) pattern checks a megabyte.
    const big = canonicalise({ method: 'POST', path: '/repos/acme/app/issues', body: { title: 'x'.repeat(1_000_000) } }, base);
    expect(() => enforceConstraints([{ path: 'body.title', op: 'matches', value: '^x+$' }], big)).not.toThrow();
  });

  it('checks each op, and matches with RE2 over the whole value', () => {
    const req = canonicalise({ method: 'POST', path: '/repos/acme/app/issues', query: { state: 'open' }, headers: { 'X-Team': 'core' }, body: { title: 'Bug', labels: { kind: 'bug' }, n: 3 } }, base);
    expect(holds({ path: 'method', op: 'eq', value: 'POST' }, req)).toBe(true);
    expect(holds({ path: 'method', op: 'not_eq', value: 'DELETE' }, req)).toBe(true);
    expect(holds({ path: 'url.host', op: 'in', value: ['api.github.com'] }, req)).toBe(true);
    expect(holds({ path: 'url.origin', op: 'eq', value: 'https://api.github.com' }, req)).toBe(true);
    expect(holds({ path: 'query.state', op: 'not_in', value: ['closed'] }, req)).toBe(true);
    expect(holds({ path: 'headers.x-team', op: 'eq', value: 'core' }, req)).toBe(true);
    expect(holds({ path: 'body.labels.kind', op: 'matches', value: 'bug|chore' }, req)).toBe(true);
    expect(holds({ path: 'body.labels.kind', op: 'matches', value: 'bu' }, req)).toBe(false);
    expect(holds({ path: 'body.n', op: 'eq', value: '3' }, req)).toBe(true);
    expect(holds({ path: 'body.missing', op: 'eq', value: 'x' }, req)).toBe(false);
    expect(holds({ path: 'body.missing', op: 'not_eq', value: 'x' }, req)).toBe(true);
    expect(() => holds({ path: 'body.x', op: 'matches', value: 'a'.repeat(257) }, req)).toThrow(/longer than 256/);
  });

  it('a body constraint sees the one value that is forwarded (no duplicate can hide another)', () => {
    const rule: Constraint = { path: 'body.repo', op: 'eq', value: 'acme/app' };
    expect(() => canonicalise({ method: 'POST', path: '/x', body: '{"repo":"acme/app","repo":"evil/app"}' }, base)).toThrow(/duplicate JSON key/);
    const req = canonicalise({ method: 'POST', path: '/x', body: { repo: 'acme/app' } }, base);
    enforceConstraints([rule], req);
    expect(JSON.parse(req.body!.toString())).toEqual({ repo: 'acme/app' });
  });

  it('body constraints apply to JSON bodies only: an unread body breaks every one, negative ones too', () => {
    const notProd: Constraint = { path: 'body.name', op: 'not_in', value: ['prod'] };
    const form = canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=prod' }, base);
    expect(holds(notProd, form)).toBe(false);
    expect(holds({ path: 'body.name', op: 'not_eq', value: 'prod' }, form)).toBe(false);
    expect(() => enforceConstraints([notProd], form)).toThrow(expect.objectContaining({ code: 'CONSTRAINT_VIOLATION', details: { path: 'body.name', op: 'not_in', reason: 'body_not_json' } }));
    // Other constraints still see such a body, and a JSON body (whatever its label) is checked as JSON.
    enforceConstraints([{ path: 'method', op: 'eq', value: 'POST' }], form);
    const labelled = canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': 'text/plain' }, body: '{"name":"prod"}' }, base);
    expect(() => enforceConstraints([notProd], labelled)).toThrow(expect.objectContaining({ code: 'CONSTRAINT_VIOLATION' }));
    enforceConstraints([notProd], canonicalise({ method: 'POST', path: '/x', headers: { 'content-type': 'text/plain' }, body: '{"name":"dev"}' }, base));
    // No body at all: nothing hides there, as before.
    enforceConstraints([notProd], canonicalise({ method: 'GET', path: '/x' }, base));
  });
});

describe('scrubbing', () => {
  it('replaces every occurrence and drops a tail that starts a secret', () => {
    expect(scrub(Buffer.from('a SECRET1 b SECRET1'), ['SECRET1']).toString()).toBe('a [REDACTED] b [REDACTED]');
    expect(trimSecretPrefixTail(Buffer.from('xx SECR'), ['SECRET1']).toString()).toBe('xx ');
  });
});
