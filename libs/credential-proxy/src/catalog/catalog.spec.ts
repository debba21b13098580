import { BUILTIN_CATALOG } from './builtin-catalog';
import { applyOverrides, connectionHosts, customEntry, enforceAllowedHost, hostAllowed, siteRequired, targetOf } from './catalog';
import type { GraphQLRequest } from './graphql-operations';
import { enforceScopes, pathMatches, requiredScopes } from './scope-rules';

const github = BUILTIN_CATALOG.find((e) => e.service_id === 'github')!;
const linear = BUILTIN_CATALOG.find((e) => e.service_id === 'linear')!;

/** Where `url` would go for a connection of `entry` (base URL `base`): refused with the error, or undefined. */
function refusal(entry: Parameters<typeof enforceAllowedHost>[0], base: string, url: string): unknown {
  try {
    enforceAllowedHost(entry, new URL(base), targetOf(new URL(url)));
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('catalog', () => {
  it('has the nine built-in services, each with an injection, scopes and an allowed host', () => {
    expect(BUILTIN_CATALOG.map((e) => e.service_id)).toEqual(['github', 'gitlab', 'slack', 'stripe', 'linear', 'notion', 'jira', 'openai', 'anthropic']);
    for (const e of BUILTIN_CATALOG) {
      expect(['bearer', 'header', 'query', 'basic']).toContain(e.auth.type);
      expect(e.scopes).toEqual(expect.arrayContaining(['read', 'write']));
      expect(e.allowed_hosts.length).toBeGreaterThan(0);
      expect(() => new URL(e.base_url)).not.toThrow();
    }
    expect(BUILTIN_CATALOG.find((e) => e.service_id === 'anthropic')!.auth).toEqual({ type: 'header', name: 'x-api-key' });
    expect(BUILTIN_CATALOG.find((e) => e.service_id === 'jira')!.auth.type).toBe('basic');
  });

  it('overrides a base URL: the override becomes the only allowed host and the OAuth endpoints follow it', () => {
    const [gh] = applyOverrides([github], { github: 'http://127.0.0.1:4000/api/v3' });
    expect(gh!.base_url).toBe('http://127.0.0.1:4000/api/v3');
    expect(gh!.allowed_hosts).toEqual(['127.0.0.1:4000']);
    expect(gh!.oauth!.token_url).toBe('http://127.0.0.1:4000/login/oauth/access_token');
    expect(applyOverrides([github], {})[0]).toBe(github);
  });

  it('matches allowed hosts exactly, by wildcard subdomain, or any for `*`', () => {
    expect(hostAllowed(['api.github.com'], 'api.github.com', 443, 443)).toBe(true);
    expect(hostAllowed(['api.github.com'], 'api.github.com.evil.test', 443, 443)).toBe(false);
    expect(hostAllowed(['*.atlassian.net'], 'acme.atlassian.net', 443, 443)).toBe(true);
    expect(hostAllowed(['*.atlassian.net'], 'atlassian.net', 443, 443)).toBe(false);
    expect(hostAllowed(['*.atlassian.net'], 'evilatlassian.net', 443, 443)).toBe(false);
    expect(hostAllowed(['127.0.0.1:4000'], '127.0.0.1:4001', 4001, 4000)).toBe(false);
    expect(hostAllowed(['*'], 'anything.test', 8080, 443)).toBe(true);
  });

  it("sends a Jira connection's credential to its own site only; a custom service keeps its admin's wildcard", () => {
    const jira = BUILTIN_CATALOG.find((e) => e.service_id === 'jira')!;
    expect(siteRequired(jira)).toBe(true);
    expect(siteRequired(github)).toBe(false);
    // Overridden (the tests' fakes, a Jira Data Center URL): one host, no site asked.
    expect(siteRequired(applyOverrides([jira], { jira: 'https://jira.acme.test' })[0]!)).toBe(false);
    const site = new URL('https://acme.atlassian.net');
    const hosts = connectionHosts(jira, site);
    expect(hosts.allowed_hosts).toEqual(['acme.atlassian.net']);
    expect(refusal(hosts, site.href, 'https://acme.atlassian.net/rest/api/3/myself')).toBeUndefined();
    expect(refusal(hosts, site.href, 'https://evil.atlassian.net/rest/api/3/myself')).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'host_not_allowed' } });
    // A Jira connection made before sites were required reaches no host at all (not the placeholder's).
    expect(connectionHosts(jira, undefined).allowed_hosts).toEqual([]);
    expect(refusal(connectionHosts(jira, undefined), jira.base_url, 'https://your-site.atlassian.net/rest/api/3/myself')).toMatchObject({ details: { reason: 'host_not_allowed' } });
    expect(connectionHosts(github, undefined)).toBe(github);
    const custom = customEntry({ operator_id: 'op', service_id: 'wiki', name: 'Wiki', base_url: 'https://wiki.acme.test', auth_type: 'bearer', auth_name: null, allowed_hosts: ['*.acme.test'] } as Parameters<typeof customEntry>[0]);
    expect(connectionHosts(custom, new URL('https://a.acme.test')).allowed_hosts).toEqual(['*.acme.test', 'a.acme.test']);
  });

  it('allows the base URL port only, unless an allowed-host entry names another', () => {
    expect(hostAllowed(['api.github.com'], 'api.github.com:8443', 8443, 443)).toBe(false);
    expect(hostAllowed(['api.github.com'], 'api.github.com', 80, 443)).toBe(false);
    expect(hostAllowed(['*.atlassian.net'], 'acme.atlassian.net:8443', 8443, 443)).toBe(false);
    expect(hostAllowed(['api.acme.test', 'files.acme.test:8443'], 'files.acme.test:8443', 8443, 443)).toBe(true);
    expect(hostAllowed(['api.acme.test', 'files.acme.test:8443'], 'files.acme.test', 443, 443)).toBe(false);
    expect(hostAllowed(['api.acme.test:443'], 'api.acme.test', 443, 443)).toBe(true);
    expect(hostAllowed(['[::1]:4000'], '[::1]:4000', 4000, 4000)).toBe(true);
    expect(hostAllowed(['[::1]:4000'], '[::1]:4001', 4001, 4000)).toBe(false);
  });

  it('refuses a url whose scheme or port differs from the base URL (no http: downgrade, no other port)', () => {
    const forbidden = (reason: string) => expect.objectContaining({ code: 'FORBIDDEN', details: expect.objectContaining({ reason }) });
    expect(refusal(github, github.base_url, 'https://api.github.com/user')).toBeUndefined();
    expect(refusal(github, github.base_url, 'https://api.github.com:443/user')).toBeUndefined();
    expect(refusal(github, github.base_url, 'https://uploads.github.com/repos/a/b/releases/1/assets')).toBeUndefined();
    expect(refusal(github, github.base_url, 'http://api.github.com/user')).toEqual(forbidden('scheme_not_allowed'));
    expect(refusal(github, github.base_url, 'http://api.github.com:443/user')).toEqual(forbidden('scheme_not_allowed'));
    expect(refusal(github, github.base_url, 'https://api.github.com:8443/user')).toEqual(forbidden('port_not_allowed'));
    expect(refusal(github, github.base_url, 'https://evil.example/')).toEqual(forbidden('host_not_allowed'));
    // An http base URL on a loopback port (the tests' STACK_SERVICE_BASE_URLS) allows http to that host and port.
    const [fake] = applyOverrides([github], { github: 'http://127.0.0.1:4000' });
    expect(refusal(fake!, fake!.base_url, 'http://127.0.0.1:4000/user')).toBeUndefined();
    expect(refusal(fake!, fake!.base_url, 'https://127.0.0.1:4000/user')).toEqual(forbidden('scheme_not_allowed'));
    expect(refusal(fake!, fake!.base_url, 'http://127.0.0.1:4001/user')).toEqual(forbidden('port_not_allowed'));
    // A custom service: its own base URL; `*` allows any host and port, never another scheme.
    const custom = customEntry({ operator_id: 'op', service_id: 'acme', name: 'Acme', base_url: 'http://127.0.0.1:5000/v2', auth_type: 'bearer', auth_name: null, allowed_hosts: [], created_at: new Date() });
    expect(refusal(custom, custom.base_url, 'http://127.0.0.1:5000/v2/x')).toBeUndefined();
    expect(refusal(custom, custom.base_url, 'http://127.0.0.1:80/v2/x')).toEqual(forbidden('port_not_allowed'));
    const anyHost = customEntry({ operator_id: 'op', service_id: 'any', name: 'Any', base_url: 'https://api.acme.test', auth_type: 'bearer', auth_name: null, allowed_hosts: ['*'], created_at: new Date() });
    expect(refusal(anyHost, anyHost.base_url, 'https://other.test:8443/')).toBeUndefined();
    expect(refusal(anyHost, anyHost.base_url, 'http://api.acme.test/')).toEqual(forbidden('scheme_not_allowed'));
  });

  it('builds custom entries with the generic scopes', () => {
    const e = customEntry({ operator_id: 'op', service_id: 'acme', name: 'Acme', base_url: 'https://api.acme.test/v2', auth_type: 'query', auth_name: 'key', allowed_hosts: [], created_at: new Date() });
    expect(e).toMatchObject({ auth: { type: 'query', name: 'key' }, allowed_hosts: ['api.acme.test'], scopes: ['read', 'write'], builtin: false });
  });
});

describe('scope rules', () => {
  it('matches `*` to one segment and `**` to the rest', () => {
    expect(pathMatches('/repos/*/*', '/repos/a/b')).toBe(true);
    expect(pathMatches('/repos/*/*', '/repos/a/b/c')).toBe(false);
    expect(pathMatches('/repos/**', '/repos/a/b/c')).toBe(true);
    expect(pathMatches('/user/emails', '/user/emails')).toBe(true);
  });

  it('asks for the provider scope of the first matching rule or the generic one', () => {
    expect(requiredScopes(github, 'DELETE', '/repos/acme/app')).toEqual(['delete_repo', 'write']);
    expect(requiredScopes(github, 'GET', '/repos/acme/app/issues')).toEqual(['repo', 'public_repo', 'read']);
    expect(requiredScopes(github, 'GET', '/rate_limit')).toEqual(['read']);
    expect(requiredScopes(github, 'POST', '/markdown')).toEqual(['write']);
  });

  it('decides as the first rule whose method and pattern match, for every rule of every built-in service, asked again and again', () => {
    let checked = 0;
    for (const entry of BUILTIN_CATALOG) {
      const paths = entry.scope_rules.flatMap((r) => {
        const concrete = r.path.replace(/\*\*/g, 'a/b').replace(/\*/g, 'x');
        return [concrete, `${concrete}/extra`, concrete.split('/').slice(0, -1).join('/') || '/', `${concrete}/`];
      });
      for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']) {
        for (const path of [...paths, '/', '/unknown/path']) {
          const rule = entry.scope_rules.find((r) => (r.methods === '*' || r.methods.includes(method)) && pathMatches(r.path, path));
          const generic = method === 'GET' || method === 'HEAD' ? 'read' : 'write';
          // A GraphQL rule with no document to read counts the call as a write.
          const expected = rule?.graphql ? [...new Set([...rule.graphql.write_scopes, 'write'])] : rule ? [...new Set([...rule.scopes, generic])] : [generic];
          // Twice: the second answer comes from the rules' patterns split once.
          expect([entry.service_id, method, path, requiredScopes(entry, method, path)]).toEqual([entry.service_id, method, path, expected]);
          expect(requiredScopes(entry, method, path)).toEqual(expected);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(300);
  });

  it('a read-only grant cannot write; a member (no grant) is not limited', () => {
    expect(() => enforceScopes(['read'], requiredScopes(github, 'POST', '/repos/a/b/issues'), 'POST', '/repos/a/b/issues')).toThrow(expect.objectContaining({ code: 'OUT_OF_SCOPE' }));
    expect(() => enforceScopes(['repo'], requiredScopes(github, 'POST', '/repos/a/b/issues'), 'POST', '/repos/a/b/issues')).not.toThrow();
    expect(() => enforceScopes(undefined, ['write'], 'POST', '/x')).not.toThrow();
  });

  describe('GraphQL endpoints: the documents decide, not the method', () => {
    const gql = (body: unknown, query: Array<[string, string]> = [], method = 'POST'): GraphQLRequest => ({ method, query, json: body, body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)) });
    const allowed = (entry: typeof github, granted: string[], req: GraphQLRequest) => {
      try {
        enforceScopes(granted, requiredScopes(entry, req.method, '/graphql', req), req.method, '/graphql');
        return true;
      } catch (err) {
        expect(err).toMatchObject({ code: 'OUT_OF_SCOPE' });
        return false;
      }
    };

    it('a read-only passport can query Linear and GitHub but not send a mutation or subscription', () => {
      for (const entry of [linear, github]) {
        expect(allowed(entry, ['read'], gql({ query: '{ viewer { id } }' }))).toBe(true);
        expect(allowed(entry, ['read'], gql({ query: 'query Me { viewer { id } }', operationName: 'Me', variables: {} }))).toBe(true);
        expect(allowed(entry, ['read'], gql({ query: 'mutation { issueDelete(id: "1") { success } }' }))).toBe(false);
        expect(allowed(entry, ['read'], gql({ query: 'subscription { issueUpdated { id } }' }))).toBe(false);
        expect(allowed(entry, ['write'], gql({ query: 'mutation { issueDelete(id: "1") { success } }' }))).toBe(true);
        expect(allowed(entry, ['read'], gql(undefined, [['query', '{ viewer { id } }']], 'GET'))).toBe(true);
        expect(allowed(entry, ['read'], gql(undefined, [['query', 'mutation { issueDelete(id: "1") { success } }']], 'GET'))).toBe(false);
      }
    });

    it('operationName choosing the query of a document that also holds a mutation is still a write', () => {
      const body = { query: 'query Q { viewer { id } } mutation M { issueDelete(id: "1") { success } }', operationName: 'Q' };
      expect(allowed(linear, ['read'], gql(body))).toBe(false);
    });

    it('a batch with one mutation is a write; a mutation in the URL beside a query in the body too', () => {
      expect(allowed(linear, ['read'], gql([{ query: '{ a }' }, { query: '{ b }' }]))).toBe(true);
      expect(allowed(linear, ['read'], gql([{ query: '{ a }' }, { query: 'mutation { b }' }]))).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: '{ a }' }, [['query', 'mutation { b }']]))).toBe(false);
    });

    it('fails closed: a body that is not JSON with a string query, a persisted query or another key needs write', () => {
      const raw = (text: string): GraphQLRequest => ({ method: 'POST', query: [], body: Buffer.from(text) });
      expect(allowed(linear, ['read'], raw('{ viewer { id } }'))).toBe(false);
      expect(allowed(linear, ['read'], raw('query=%7Bviewer%7Bid%7D%7D'))).toBe(false);
      expect(allowed(linear, ['read'], { method: 'POST', query: [] })).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: { kind: 'Document' } }))).toBe(false);
      expect(allowed(linear, ['read'], gql({ variables: {} }))).toBe(false);
      expect(allowed(linear, ['read'], gql([]))).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: '{ a }', extensions: { persistedQuery: { version: 1, sha256Hash: 'ab' } } }))).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: '{ a }', documentId: 'd1' }))).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: '{ a }' }, [['documentId', 'd1']]))).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: '{ a }' }, [], 'PUT'))).toBe(false);
      expect(allowed(linear, ['read'], gql({ query: 'MUTATION { a }' }))).toBe(false);
    });

    it("Linear's narrow scopes allow only their own mutation, whatever alias it hides behind", () => {
      const create = 'mutation { issueCreate(input: { title: "x", teamId: "t" }) { success } }';
      expect(allowed(linear, ['issues:create'], gql({ query: create }))).toBe(true);
      expect(allowed(linear, ['comments:create'], gql({ query: create }))).toBe(false);
      expect(allowed(linear, ['comments:create'], gql({ query: 'mutation { commentCreate(input: { body: "hi", issueId: "i" }) { success } }' }))).toBe(true);
      expect(allowed(linear, ['issues:create'], gql({ query: 'mutation { issueCreate: issueDelete(id: "1") { success } }' }))).toBe(false);
      expect(allowed(linear, ['issues:create'], gql({ query: `${create} mutation { teamDelete(id: "t") { success } }` }))).toBe(false);
      expect(allowed(linear, ['issues:create'], gql({ query: 'mutation { issueCreate(input: {}) { success } commentCreate(input: {}) { success } }' }))).toBe(false);
      expect(allowed(linear, ['issues:create'], gql({ query: 'mutation { ...F } fragment F on Mutation { issueCreate(input: {}) { success } }' }))).toBe(false);
      expect(allowed(linear, ['issues:create'], gql({ query: 'mutation { constructor }' }))).toBe(false);
      expect(allowed(linear, ['issues:create'], gql({ query: 'subscription { issueCreate }' }))).toBe(false);
    });
  });
});
