import { BUILTIN_CATALOG } from './builtin-catalog';
import { applyOverrides, customEntry, hostAllowed } from './catalog';
import { enforceScopes, pathMatches, requiredScopes } from './scope-rules';

const github = BUILTIN_CATALOG.find((e) => e.service_id === 'github')!;

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
    expect(hostAllowed(['api.github.com'], 'api.github.com')).toBe(true);
    expect(hostAllowed(['api.github.com'], 'api.github.com.evil.test')).toBe(false);
    expect(hostAllowed(['*.atlassian.net'], 'acme.atlassian.net')).toBe(true);
    expect(hostAllowed(['*.atlassian.net'], 'atlassian.net')).toBe(false);
    expect(hostAllowed(['*.atlassian.net'], 'evilatlassian.net')).toBe(false);
    expect(hostAllowed(['127.0.0.1:4000'], '127.0.0.1:4001')).toBe(false);
    expect(hostAllowed(['*'], 'anything.test')).toBe(true);
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
          const expected = rule ? [...new Set([...rule.scopes, generic])] : [generic];
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
});
