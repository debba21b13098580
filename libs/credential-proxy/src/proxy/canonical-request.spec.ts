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
});

describe('constraints on the canonical request', () => {
  const pathRule: Constraint = { path: 'url.pathname', op: 'starts_with', value: '/repos/acme/' };

  it('a %2e%2e trick cannot escape a path constraint', () => {
    const req = canonicalise({ method: 'GET', path: '/repos/acme/%2e%2e/other/secrets' }, base);
    expect(req.pathname).toBe('/repos/other/secrets');
    expect(() => enforceConstraints([pathRule], req)).toThrow(expect.objectContaining({ code: 'CONSTRAINT_VIOLATION' }));
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
});

describe('scrubbing', () => {
  it('replaces every occurrence and drops a tail that starts a secret', () => {
    expect(scrub(Buffer.from('a SECRET1 b SECRET1'), ['SECRET1']).toString()).toBe('a [REDACTED] b [REDACTED]');
    expect(trimSecretPrefixTail(Buffer.from('xx SECR'), ['SECRET1']).toString()).toBe('xx ');
  });
});
