/**
 * The credential proxy end to end over HTTP, in-process on the real Postgres, NATS and Redis, with
 * fake upstreams on loopback. Two replicas of one deployment (`A`, `A2`: same database, bus prefix
 * and Redis keys) allow 127.0.0.1/32 (STACK_PROXY_PRIVATE_ALLOWLIST) so the catalog can point at
 * the fakes; a second deployment `B` on the same database has no allowlist and shows 127.0.0.1
 * refused. Every attack is its own test. Every log line the process writes is captured and
 * scanned for the secrets at the end.
 *
 * Passports: issue 5's verifier is not wired into the proxy yet, so the `PassportAuthority` seam
 * is filled here with a stand-in that reads unsigned test passports (claims as base64url JSON).
 * The proxy's use of the claims — connections, scopes, constraints — is what these tests check.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';

import { CredentialProxyCommands, StackError, type CallerContext, type Constraint, type PassportClaims, type ProxyResponse } from '@stack/contracts';
import { startStack, type RunningStack } from '@stack/runtime';
import { CallerContextSigner, InFlightRegistry, systemResolver, type CredentialSubject, type HostResolver } from '@stack/security';
import { FakeOAuthProvider, TEST_NATS_URL, TEST_REDIS_URL, createTestDatabase, startFakeGitHub, uniqueName, type FakeGitHub, type TestDatabase } from '@stack/testing';

import type { PassportAuthority } from './caller/caller-seams';
import { rotateMasterKeyCommand } from './cli/rotate-master-key.command';
import { ConnectionRepository } from './connections/connection.repository';
import { createCredentialProxyService } from './credential-proxy.module';

const GITHUB_TOKEN = `ghp_${randomBytes(16).toString('hex')}`;
const OTHER_TOKEN = `ghp_${randomBytes(16).toString('hex')}`;
const OAUTH_CLIENT_SECRET = `cs_${randomBytes(12).toString('hex')}`;
const internalSecret = randomBytes(32).toString('base64');
const signer = new CallerContextSigner(Buffer.from(internalSecret, 'base64'));

const member = (operator: string, scopes = ['stack:services', 'stack:admin']): CallerContext => ({ issuer: 'auth', kind: 'member', operator_id: operator, member_id: `mem_${operator}`, scopes });
const OP = 'op_alpha';

/** Test passports: `test-passport.<base64url claims>` (see the header comment). */
const testPassports: PassportAuthority = {
  async verify(token) {
    if (!token.startsWith('test-passport.')) throw new StackError('UNAUTHORIZED', 'not a passport');
    const claims = JSON.parse(Buffer.from(token.slice(14), 'base64url').toString('utf8')) as PassportClaims;
    if (claims.exp * 1000 < Date.now()) throw new StackError('PASSPORT_EXPIRED', 'expired');
    const subject: CredentialSubject = { jti: claims.jti, chain: claims.stk.chain, operator_id: claims.stk.operator_id, agent_id: claims.stk.agent_id, session_id: claims.stk.session_id, member_id: claims.stk.member_id, issued_at_ms: claims.stk.issued_at_ms };
    return { claims, subject };
  },
};

function passport(services: Array<{ connection_id: string; scopes: string[]; constraints?: Constraint[] }>, jti = `ppt_${randomBytes(8).toString('hex')}`): string {
  const now = Math.floor(Date.now() / 1000);
  const claims: PassportClaims = {
    jti,
    sub: 'agt_bot',
    iss: 'http://stack.test',
    aud: 'http://stack.test',
    iat: now,
    exp: now + 600,
    stk: {
      operator_id: OP,
      agent_id: 'agt_bot',
      agent_name: 'bot',
      member_id: `mem_${OP}`,
      session_id: 'ses_1',
      issued_at_ms: Date.now(),
      chain: [],
      delegation_depth: 0,
      intent_summary: 'test',
      intent_services: ['github'],
      services: services.map((s) => ({ ...s, service_id: 'github', service_name: 'GitHub', constraints: s.constraints ?? [] })),
    },
  };
  return `test-passport.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
}

/** Issue 5's registry of calls in flight, handed to the proxy through its seam. */
const inFlight = new InFlightRegistry();

/** Names that resolve to private addresses without touching /etc/hosts. */
const resolver: HostResolver = async (host) => {
  if (host === 'db.internal.test') return [{ address: '192.168.7.10', family: 4 }];
  if (host === 'metadata-alias.test') return [{ address: '169.254.169.254', family: 4 }];
  return systemResolver(host);
};

interface Answer<T = unknown> {
  status: number;
  body: T;
  text: string;
}

async function call<T = Record<string, unknown>>(stack: RunningStack, method: string, path: string, body?: unknown, caller: CallerContext = member(OP), raw?: string): Promise<Answer<T>> {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${signer.sign(caller)}`, ...(body !== undefined || raw ? { 'content-type': 'application/json' } : {}) },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed as T, text };
}

/**
 * The human's browser through oauth/start's URL: STACK's confirmation page, Continue (the page's
 * cookie carried), the provider, back to the callback with the binding cookie Continue set.
 */
async function browseOAuth(stack: RunningStack, startUrl: string): Promise<{ html: string; providerUrl: string; binding: string; callback: URL; done: Response }> {
  const target = new URL(startUrl);
  const pageRes = await fetch(`${stack.url}${target.pathname}${target.search}`);
  const html = await pageRes.text();
  expect(pageRes.status).toBe(200);
  // Under no-referrer a browser would post Continue with Origin: null, which is refused.
  expect(pageRes.headers.get('referrer-policy')).toBe('same-origin');
  const pageCookie = pageRes.headers.getSetCookie()[0]!.split(';')[0]!;
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
  const cont = await fetch(`${stack.url}/v1/connections/oauth/confirm`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: pageCookie },
    body: new URLSearchParams({ state: target.searchParams.get('state')!, csrf }).toString(),
  });
  expect(cont.status).toBe(303);
  const bindingCookie = cont.headers.getSetCookie().find((c) => c.startsWith('stack_oauth_b_'))!;
  expect(bindingCookie).toMatch(/; HttpOnly; SameSite=Lax; Path=\/v1\/connections\/oauth\/callback; Max-Age=\d+/);
  const providerUrl = cont.headers.get('location')!;
  const approved = await fetch(providerUrl, { redirect: 'manual' });
  const callback = new URL(approved.headers.get('location')!);
  const binding = bindingCookie.split(';')[0]!;
  const done = await fetch(`${stack.url}${callback.pathname}${callback.search}`, { headers: { cookie: binding } });
  return { html, providerUrl, binding, callback, done };
}

const proxy = (stack: RunningStack, body: Record<string, unknown>, caller?: CallerContext) => call<ProxyResponse & { error?: { code: string; details?: Record<string, unknown> } }>(stack, 'POST', '/v1/proxy', body, caller);

describe('credential proxy over HTTP (real servers, fake upstreams on loopback)', () => {
  let db: TestDatabase;
  let github: FakeGitHub;
  let oauth: FakeOAuthProvider;
  let A: RunningStack;
  let A2: RunningStack;
  let B: RunningStack;
  let ghConn: string;
  let anyHostConn: string;
  let keys: string;
  let service: ReturnType<typeof createCredentialProxyService>;
  const lines: string[] = [];
  const realWriteSync = fs.writeSync;

  const env = (extra: Record<string, string>) => ({
    STACK_SERVICES: 'credential-proxy',
    DATABASE_URL: db.url,
    NATS_URL: TEST_NATS_URL,
    REDIS_URL: TEST_REDIS_URL,
    STACK_INTERNAL_SECRET: internalSecret,
    STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    PORT: '0',
    LOG_LEVEL: 'debug',
    STACK_PROXY_TIMEOUT_MS: '600',
    STACK_SERVICE_BASE_URLS: `github=${github.url}`,
    STACK_UPSTREAM_OAUTH_CLIENTS: `github=stack-client:${OAUTH_CLIENT_SECRET}`,
    ...extra,
  });

  beforeAll(async () => {
    // Capture every line the loggers write (pino writes to fd 1 synchronously).
    jest.spyOn(fs, 'writeSync').mockImplementation(((fd: number, data: unknown, ...rest: unknown[]) => {
      if (fd === 1 && typeof data === 'string') {
        lines.push(...data.split('\n').filter(Boolean));
        return Buffer.byteLength(data);
      }
      return (realWriteSync as (...a: unknown[]) => number)(fd, data, ...rest);
    }) as typeof fs.writeSync);
    db = await createTestDatabase();
    oauth = new FakeOAuthProvider({ clientId: 'stack-client', clientSecret: OAUTH_CLIENT_SECRET });
    github = await startFakeGitHub({ tokens: [GITHUB_TOKEN, OTHER_TOKEN], oauth });
    keys = `k1:${randomBytes(32).toString('base64')}`;
    const prefix = uniqueName('cp');
    service = createCredentialProxyService({ passportAuthority: testPassports, resolver, inFlight });
    A = await startStack({ available: [service], env: env({ STACK_BUS_PREFIX: prefix, STACK_MASTER_KEYS: keys, STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32', STACK_PUBLIC_URL: 'http://stack.test' }) });
    A2 = await startStack({ available: [service], env: env({ STACK_BUS_PREFIX: prefix, STACK_MASTER_KEYS: keys, STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32', STACK_PUBLIC_URL: 'http://stack.test' }) });
    B = await startStack({ available: [createCredentialProxyService({ passportAuthority: testPassports, resolver })], env: env({ STACK_BUS_PREFIX: uniqueName('cpb'), STACK_MASTER_KEYS: keys }) });

    const created = await call<{ id: string; name: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'main', credential: { token: GITHUB_TOKEN } });
    expect(created.status).toBe(201);
    ghConn = created.body.id;
    expect((await call(A, 'POST', '/v1/services', { service_id: 'anyhost', name: 'Any host', base_url: github.url, auth: { type: 'bearer' }, allowed_hosts: ['*'] })).status).toBe(201);
    anyHostConn = (await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'anyhost', name: 'probe', credential: { token: OTHER_TOKEN } })).body.id;
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([A?.stop(), A2?.stop(), B?.stop()]);
    await github?.close();
    await db?.drop();
    jest.restoreAllMocks();
  });

  it('answers a connection without its secret, ever', async () => {
    const list = await call<{ items: Array<Record<string, unknown>> }>(A, 'GET', '/v1/connections');
    expect(list.status).toBe(200);
    expect(list.body.items.map((c) => c.id)).toEqual(expect.arrayContaining([ghConn, anyHostConn]));
    expect(list.text).not.toContain(GITHUB_TOKEN);
    expect(list.text).not.toContain(OTHER_TOKEN);
    const one = await call(A, 'GET', `/v1/connections/${ghConn}`);
    expect(one.body).toMatchObject({ id: ghConn, service_id: 'github', name: 'main', kind: 'api_key', status: 'active' });
    expect(one.text).not.toContain(GITHUB_TOKEN);
  });

  it('injects the credential: the fake receives it, the caller never sees it', async () => {
    const before = github.requests.length;
    const res = await proxy(A, { service: ghConn, method: 'GET', path: '/echo', headers: { accept: 'application/json' } });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe(200);
    const seen = github.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${GITHUB_TOKEN}`);
    // The echo reflected the token; the proxy scrubbed it from the answer.
    expect(res.text).not.toContain(GITHUB_TOKEN);
    expect(res.body.body).toContain('[REDACTED]');
  });

  it('passes pagination Link headers through', async () => {
    const res = await proxy(A, { service: 'github', method: 'GET', path: '/repos/acme/app/issues', query: { page: 2 } });
    expect(res.body.status).toBe(200);
    expect(JSON.parse(res.body.body)).toEqual([{ number: 3, title: 'Issue 3' }, { number: 4, title: 'Issue 4' }]);
    expect(res.body.headers.link).toContain('rel="next"');
    expect(res.body.headers.link).toContain('page=3');
  });

  it('verifies a connection through the proxy', async () => {
    const res = await call(A, 'POST', `/v1/connections/${ghConn}/verify`);
    expect(res.body).toEqual({ id: ghConn, ok: true, status: 200 });
  });

  describe('attacks refused', () => {
    const refusedAddress = (res: Answer<{ error?: { code: string; details?: Record<string, unknown> } }>) => {
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'address_not_allowed' } });
    };

    it('127.0.0.1 is refused without the allowlist (and reached with it)', async () => {
      const url = `http://127.0.0.1:${github.port}/user`;
      refusedAddress(await proxy(B, { service: anyHostConn, method: 'GET', url }));
      const allowed = await proxy(A, { service: anyHostConn, method: 'GET', url });
      expect(allowed.body.status).toBe(200);
    });

    it('169.254.169.254 (cloud metadata) is refused', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://169.254.169.254/latest/meta-data/' }));
    });

    it('[::1] is refused', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: `http://[::1]:${github.port}/user` }));
    });

    it('[::ffff:127.0.0.1] (IPv4-mapped) is refused even though 127.0.0.1 is allowlisted', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: `http://[::ffff:127.0.0.1]:${github.port}/user` }));
    });

    it('[::ffff:0:127.0.0.1] (SIIT IPv4-translated) and NAT64 spellings of the metadata address are refused', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: `http://[::ffff:0:127.0.0.1]:${github.port}/user` }));
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://[::ffff:0:169.254.169.254]/latest/meta-data/' }));
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://[64:ff9b:1::169.254.169.254]/latest/meta-data/' }));
    });

    it('100.64.0.1 (CGNAT) is refused', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://100.64.0.1/' }));
    });

    it('decimal and hex spellings of private IPs are refused', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://2852039166/latest/meta-data/' }));
      refusedAddress(await proxy(B, { service: anyHostConn, method: 'GET', url: `http://0x7f000001:${github.port}/user` }));
      refusedAddress(await proxy(B, { service: anyHostConn, method: 'GET', url: `http://2130706433:${github.port}/user` }));
      refusedAddress(await proxy(B, { service: anyHostConn, method: 'GET', url: `http://0177.0.0.1:${github.port}/user` }));
    });

    it('a hostname that resolves to a private address is refused', async () => {
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://db.internal.test/' }));
      refusedAddress(await proxy(A, { service: anyHostConn, method: 'GET', url: 'http://metadata-alias.test/latest/' }));
      refusedAddress(await proxy(B, { service: anyHostConn, method: 'GET', url: `http://localhost:${github.port}/user` }));
    });

    it('a host outside the connection’s allowed hosts is refused before DNS', async () => {
      const res = await proxy(A, { service: ghConn, method: 'GET', url: 'https://evil.example/steal' });
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'host_not_allowed' } });
    });

    it('a redirect is returned as it is, not followed', async () => {
      const res = await proxy(A, { service: ghConn, method: 'GET', path: '/redirect' });
      expect(res.status).toBe(200);
      expect(res.body.status).toBe(302);
      expect(res.body.headers.location).toBe('http://169.254.169.254/latest/meta-data/');
    });

    it('%2e%2e cannot climb out of a path constraint', async () => {
      const token = passport([{ connection_id: ghConn, scopes: ['read'], constraints: [{ path: 'url.pathname', op: 'starts_with', value: '/repos/acme/' }] }]);
      const before = github.requests.length;
      const res = await proxy(A, { service: ghConn, method: 'GET', path: '/repos/acme/%2e%2e/other/issues', passport_token: token });
      expect(res.status).toBe(403);
      expect(res.body.error?.code).toBe('CONSTRAINT_VIOLATION');
      const ok = await proxy(A, { service: ghConn, method: 'GET', path: '/repos/acme/app/issues', passport_token: token });
      expect(ok.body.status).toBe(200);
      expect(github.requests.slice(before).map((r) => r.url)).toEqual(['/repos/acme/app/issues']);
    });

    it('duplicate keys cannot slip past a body or query constraint', async () => {
      const token = passport([{ connection_id: ghConn, scopes: ['write', 'read'], constraints: [{ path: 'body.title', op: 'eq', value: 'ok' }, { path: 'query.state', op: 'not_eq', value: 'all' }] }]);
      const before = github.requests.length;
      const inBody = await proxy(A, { service: ghConn, method: 'POST', path: '/repos/acme/app/issues', headers: { 'content-type': 'application/json' }, body: '{"title":"ok","title":"evil"}', passport_token: token });
      expect(inBody.status).toBe(400);
      expect(inBody.body.error?.code).toBe('INVALID_REQUEST');
      const envelope = await call(A, 'POST', '/v1/proxy', undefined, member(OP), `{"service":"${ghConn}","method":"POST","path":"/repos/acme/app/issues","passport_token":"${token}","body":{"title":"ok","title":"evil"}}`);
      expect(envelope.status).toBe(400);
      const inQuery = await proxy(A, { service: ghConn, method: 'GET', path: '/repos/acme/app/issues?state=open&state=all', passport_token: token });
      expect(inQuery.status).toBe(400);
      expect(github.requests.length).toBe(before);
    });

    it('a url with another scheme or port than the connection’s base URL is refused: no downgrade, no other port', async () => {
      const before = github.requests.length;
      const https = await proxy(A, { service: ghConn, method: 'GET', url: `https://127.0.0.1:${github.port}/user` });
      expect(https.status).toBe(403);
      expect(https.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'scheme_not_allowed' } });
      const port = await proxy(A, { service: ghConn, method: 'GET', url: `http://127.0.0.1:${github.port === 65535 ? 1 : github.port + 1}/user` });
      expect(port.status).toBe(403);
      expect(port.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'port_not_allowed' } });
      expect(github.requests.length).toBe(before);
      // The base URL itself (http on a loopback port here) is reached, by url or by path.
      expect((await proxy(A, { service: ghConn, method: 'GET', url: `http://127.0.0.1:${github.port}/user` })).body.status).toBe(200);
    });

    it('a read-only passport cannot send a GraphQL mutation; it can send a query', async () => {
      const readOnly = passport([{ connection_id: ghConn, scopes: ['read'] }]);
      const before = github.requests.length;
      for (const query of ['mutation { deleteRepository(input: {repositoryId: "1"}) { clientMutationId } }', 'query Q { viewer { login } } mutation M { a }', 'MUTATION { a }']) {
        const res = await proxy(A, { service: ghConn, method: 'POST', path: '/graphql', body: { query, operationName: 'Q' }, passport_token: readOnly });
        expect({ query, status: res.status, code: res.body.error?.code }).toEqual({ query, status: 403, code: 'OUT_OF_SCOPE' });
      }
      const raw = await proxy(A, { service: ghConn, method: 'POST', path: '/graphql', headers: { 'content-type': 'application/graphql' }, body: '{ viewer { login } }', passport_token: readOnly });
      expect(raw.body.error?.code).toBe('OUT_OF_SCOPE');
      expect(github.requests.length).toBe(before);
      const query = await proxy(A, { service: ghConn, method: 'POST', path: '/graphql', body: { query: '# mutation { a }\nquery { viewer { login } }' }, passport_token: readOnly });
      expect(query.status).toBe(200);
      expect(github.requests.slice(before).map((r) => r.url)).toEqual(['/graphql']);
    });

    it('a body constraint cannot be dodged by the content type', async () => {
      const token = passport([{ connection_id: ghConn, scopes: ['read', 'write'], constraints: [{ path: 'body.title', op: 'not_in', value: ['prod'] }] }]);
      const before = github.requests.length;
      const send = (type: string, body: string) => proxy(A, { service: ghConn, method: 'POST', path: '/repos/acme/app/issues', headers: { 'content-type': type }, body, passport_token: token });
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', ' application/json']) {
        const dup = await send(type, '{"title":"prod","title":"x"}');
        expect({ type, status: dup.status, code: dup.body.error?.code }).toEqual({ type, status: 400, code: 'INVALID_REQUEST' });
        const prod = await send(type, '{"title":"prod"}');
        expect({ type, status: prod.status, code: prod.body.error?.code }).toEqual({ type, status: 403, code: 'CONSTRAINT_VIOLATION' });
      }
      const form = await send('application/x-www-form-urlencoded', 'title=prod');
      expect(form.body.error).toMatchObject({ code: 'CONSTRAINT_VIOLATION', details: { reason: 'body_not_json' } });
      expect(github.requests.length).toBe(before);
    });

    it('a number that would not be forwarded exactly is refused, in the envelope or a string body', async () => {
      const before = github.requests.length;
      const envelope = await call<{ error: { code: string; message: string } }>(A, 'POST', '/v1/proxy', undefined, member(OP), `{"service":"${ghConn}","method":"POST","path":"/repos/acme/app/issues","body":{"title":"x","id":12345678901234567890}}`);
      expect(envelope.status).toBe(400);
      expect(envelope.body.error.message).toMatch(/JSON number \(12345678901234567890\) that is not finite or lies beyond/);
      const inString = await proxy(A, { service: ghConn, method: 'POST', path: '/repos/acme/app/issues', body: '{"title":"x","f":1e400}' });
      expect(inString.status).toBe(400);
      expect(github.requests.length).toBe(before);
    });

    it('a `..;` segment is refused', async () => {
      const token = passport([{ connection_id: ghConn, scopes: ['read'], constraints: [{ path: 'url.pathname', op: 'starts_with', value: '/repos/acme/' }] }]);
      for (const path of ['/repos/acme/..;/..;/user', '/repos/acme/%2e%2e%3b/other/issues']) {
        const res = await proxy(A, { service: ghConn, method: 'GET', path, passport_token: token });
        expect({ path, status: res.status, code: res.body.error?.code }).toEqual({ path, status: 400, code: 'INVALID_REQUEST' });
      }
    });

    it('a read-only passport cannot POST; a constraint violation is CONSTRAINT_VIOLATION', async () => {
      const readOnly = passport([{ connection_id: ghConn, scopes: ['read'] }]);
      const post = await proxy(A, { service: ghConn, method: 'POST', path: '/repos/acme/app/issues', body: { title: 'x' }, passport_token: readOnly });
      expect(post.status).toBe(403);
      expect(post.body.error?.code).toBe('OUT_OF_SCOPE');
      const limited = passport([{ connection_id: ghConn, scopes: ['read'], constraints: [{ path: 'url.pathname', op: 'matches', value: '/repos/acme/[a-z]+/issues' }] }]);
      const bad = await proxy(A, { service: ghConn, method: 'GET', path: '/user', passport_token: limited });
      expect(bad.body.error?.code).toBe('CONSTRAINT_VIOLATION');
    });

    it('a smuggled Host or Authorization header never reaches the upstream', async () => {
      const before = github.requests.length;
      const res = await proxy(A, { service: ghConn, method: 'GET', path: '/echo', headers: { Host: 'evil.example', Authorization: 'Bearer attacker', Cookie: 'session=stolen', 'X-Forwarded-Host': 'evil.example', 'Accept-Encoding': 'gzip', Range: 'bytes=0-3', 'X-HTTP-Method-Override': 'DELETE', 'X-Original-URL': '/admin' } });
      expect(res.body.status).toBe(200);
      const seen = github.requests[before]!;
      expect(seen.headers.host).toBe(`127.0.0.1:${github.port}`);
      expect(seen.headers.authorization).toBe(`Bearer ${GITHUB_TOKEN}`);
      expect(seen.headers.cookie).toBeUndefined();
      expect(seen.headers['x-forwarded-host']).toBeUndefined();
      // Compression and byte ranges would hide a reflected secret from the scrubber.
      expect(seen.headers['accept-encoding']).toBe('identity');
      expect(seen.headers.range).toBeUndefined();
      // Nor may an upstream be told to act on another method or path than the one checked.
      expect(seen.headers['x-http-method-override']).toBeUndefined();
      expect(seen.headers['x-original-url']).toBeUndefined();
    });

    it('an 11 MB answer is refused over REST (413) and cut, marked truncated, as a bus result', async () => {
      const rest = await proxy(A, { service: ghConn, method: 'GET', path: '/big' });
      expect(rest.status).toBe(413);
      expect(rest.body.error?.code).toBe('PAYLOAD_TOO_LARGE');
      const viaBus = await A.bus.forService('mcp-gateway').request(CredentialProxyCommands.proxyRequest, { service: ghConn, method: 'GET', path: '/big' }, { caller: member(OP), timeoutMs: 10_000 });
      expect(viaBus.status).toBe(200);
      expect(viaBus.truncated).toBe(true);
      expect(viaBus.body.length).toBeGreaterThan(500_000);
      expect(Buffer.byteLength(JSON.stringify(viaBus))).toBeLessThan(900 * 1024);
    });

    it('an upstream that never answers ends in UPSTREAM_TIMEOUT (timeout set to 600 ms for the test)', async () => {
      const res = await proxy(A, { service: ghConn, method: 'GET', path: '/hang' });
      expect(res.status).toBe(504);
      expect(res.body.error?.code).toBe('UPSTREAM_TIMEOUT');
    });

    it("another operator's connection id is NOT_FOUND (404), never 403", async () => {
      const res = await proxy(A, { service: ghConn, method: 'GET', path: '/user' }, member('op_beta'));
      expect(res.status).toBe(404);
      expect(res.body.error?.code).toBe('NOT_FOUND');
      expect((await call(A, 'GET', `/v1/connections/${ghConn}`, undefined, member('op_beta'))).status).toBe(404);
      expect((await call(A, 'DELETE', `/v1/connections/${ghConn}`, undefined, member('op_beta'))).status).toBe(404);
    });

    it('a revocation cuts a call in flight: the upstream request is cancelled, the caller gets PASSPORT_REVOKED', async () => {
      const jti = `ppt_${randomBytes(8).toString('hex')}`;
      const token = passport([{ connection_id: ghConn, scopes: ['read'] }], jti);
      const pending = proxy(A, { service: ghConn, method: 'GET', path: '/slow', query: { ms: 450 }, passport_token: token });
      for (let i = 0; i < 100 && inFlight.size === 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(inFlight.abortMatching({ id: 'rev_test', kind: 'jti', value: jti, operator_id: OP, revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 60_000 })).toBe(1);
      const res = await pending;
      expect(res.status).toBe(401);
      expect(res.body.error?.code).toBe('PASSPORT_REVOKED');
    });

    it("a member's own call in flight is cut by revoking the member or their app, never by revoking all passports", async () => {
      const caller: CallerContext = { ...member(OP), member_id: 'mem_inflight', client_id: 'cli_inflight' };
      const revoke = (kind: 'operator' | 'member' | 'client', value: string) => inFlight.abortMatching({ id: `rev_${kind}`, kind, value, operator_id: OP, revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 60_000 });
      const slow = () => proxy(A, { service: ghConn, method: 'GET', path: '/slow', query: { ms: 300 } }, caller);
      const waitInFlight = async () => {
        for (let i = 0; i < 100 && inFlight.size === 0; i++) await new Promise((r) => setTimeout(r, 5));
      };
      const kept = slow();
      await waitInFlight();
      expect(revoke('operator', OP)).toBe(0);
      expect((await kept).body.status).toBe(200);
      for (const [kind, value] of [['member', 'mem_inflight'], ['client', 'cli_inflight']] as const) {
        const cut = slow();
        await waitInFlight();
        expect(revoke(kind, value)).toBe(1);
        expect((await cut).status).toBe(401);
      }
    });

    it('over the bus (the MCP gateway’s path) the signed caller context is the caller; an agent needs its passport', async () => {
      const gateway = A.bus.forService('mcp-gateway');
      const ok = await gateway.request(CredentialProxyCommands.proxyRequest, { service: ghConn, method: 'GET', path: '/user' }, { caller: member(OP) });
      expect(ok).toMatchObject({ status: 200, truncated: false, connection_id: ghConn });
      const agent: CallerContext = { issuer: 'mcp-gateway', kind: 'agent', operator_id: OP, agent_id: 'agt_bot', scopes: ['stack:services'] };
      await expect(gateway.request(CredentialProxyCommands.proxyRequest, { service: ghConn, method: 'GET', path: '/user' }, { caller: agent })).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
      const withPassport = await gateway.request(CredentialProxyCommands.proxyRequest, { service: ghConn, method: 'GET', path: '/user', passport_token: passport([{ connection_id: ghConn, scopes: ['read'] }]) }, { caller: agent });
      expect(withPassport.status).toBe(200);
      const listing = await gateway.request(CredentialProxyCommands.listServices, {}, { caller: member(OP) });
      expect(listing.items.map((i) => i.service_id)).toEqual(expect.arrayContaining(['github', 'gitlab', 'slack', 'stripe', 'linear', 'notion', 'jira', 'openai', 'anthropic', 'anyhost']));
      expect(listing.items.find((i) => i.service_id === 'github')!.connections.map((c) => c.id)).toContain(ghConn);
      expect(JSON.stringify(listing)).not.toContain(GITHUB_TOKEN);
      const link = await gateway.request(CredentialProxyCommands.connectService, { service_id: 'slack', name: 'team' }, { caller: member(OP) });
      expect(link.url).toMatch(/^http:\/\/stack\.test\/v1\/connections\/connect\?token=/);
    });

    it('a caller without a valid bearer credential is UNAUTHORIZED', async () => {
      const res = await fetch(`${A.url}/v1/proxy`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer forged.token.here' }, body: '{}' });
      expect(res.status).toBe(401);
    });
  });

  it('picks the one connection of a catalog id, and says AMBIGUOUS_CONNECTION when there are several', async () => {
    const op = 'op_gamma';
    const first = await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'one', credential: { token: GITHUB_TOKEN } }, member(op));
    expect((await proxy(A, { service: 'github', method: 'GET', path: '/user' }, member(op))).body.connection_id).toBe(first.body.id);
    await call(A, 'POST', '/v1/connections', { service_id: 'github', name: 'two', credential: { token: OTHER_TOKEN } }, member(op));
    const res = await proxy(A, { service: 'github', method: 'GET', path: '/user' }, member(op));
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('AMBIGUOUS_CONNECTION');
    const del = await call(A, 'DELETE', `/v1/connections/${first.body.id}`, undefined, member(op));
    expect(del.body).toEqual({ id: first.body.id, deleted: true });
  });

  it('a disconnect on one replica stops calls through another at once (no stale cached connection)', async () => {
    const op = 'op_delta';
    const conn = await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'short-lived', credential: { token: GITHUB_TOKEN } }, member(op));
    // A2 reads the connection (and keeps it in memory) before A deletes it.
    expect((await proxy(A2, { service: conn.body.id, method: 'GET', path: '/user' }, member(op))).body.status).toBe(200);
    expect((await proxy(A2, { service: conn.body.id, method: 'GET', path: '/user' }, member(op))).body.status).toBe(200);
    expect((await call(A, 'DELETE', `/v1/connections/${conn.body.id}`, undefined, member(op))).status).toBe(200);
    const after = await proxy(A2, { service: conn.body.id, method: 'GET', path: '/user' }, member(op));
    expect(after.status).toBe(404);
    expect(after.body.error?.code).toBe('NOT_FOUND');
    // A new connection made on A2 is usable on A straight away.
    const next = await call<{ id: string }>(A2, 'POST', '/v1/connections', { service_id: 'github', name: 'replacement', credential: { token: GITHUB_TOKEN } }, member(op));
    expect((await proxy(A, { service: 'github', method: 'GET', path: '/user' }, member(op))).body.connection_id).toBe(next.body.id);
  });

  it('a disconnect takes the connection’s token out of the log redactor; a token another connection holds stays redacted', async () => {
    const op = 'op_epsilon';
    const own = `ghp_${randomBytes(16).toString('hex')}`;
    const solo = await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'solo', credential: { token: own } }, member(op));
    const shared = await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'shared', credential: { token: GITHUB_TOKEN } }, member(op));
    const from = lines.length;
    A.logger.info(`before ${own}`);
    expect((await call(A, 'DELETE', `/v1/connections/${solo.body.id}`, undefined, member(op))).status).toBe(200);
    expect((await call(A, 'DELETE', `/v1/connections/${shared.body.id}`, undefined, member(op))).status).toBe(200);
    // `own` is logged on purpose here: no connection holds it any more.
    A.logger.info(`after ${own} ${GITHUB_TOKEN}`);
    const msgs = lines.slice(from).flatMap((l) => (l.startsWith('{') ? [String((JSON.parse(l) as { msg?: unknown }).msg)] : []));
    expect(msgs).toEqual(expect.arrayContaining([`before [REDACTED]`, `after ${own} [REDACTED]`]));
  });

  it('replays the stored outcome for a repeated idempotency key and refuses a different request under it', async () => {
    const before = github.issuesCreated;
    const body = { service: ghConn, method: 'POST', path: '/repos/acme/app/issues', body: { title: 'once' }, idempotency_key: `idem-${randomBytes(4).toString('hex')}` };
    const first = await proxy(A, body);
    const again = await proxy(A2, body);
    expect(first.body.status).toBe(201);
    expect(again.body).toMatchObject({ status: 201, body: first.body.body, replayed: true });
    expect(github.issuesCreated).toBe(before + 1);
    const other = await proxy(A, { ...body, body: { title: 'different' } });
    expect(other.status).toBe(409);
    expect(other.body.error?.code).toBe('IDEMPOTENCY_CONFLICT');
  });

  it('refuses a credential too short to keep out of the logs, and later log lines stay intact', async () => {
    const from = lines.length;
    for (const credential of [{ token: 'e' }, { token: '"' }, { value: 'short' }]) {
      const res = await call<{ error: { code: string } }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'tiny', credential });
      expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 400, code: 'INVALID_REQUEST' });
    }
    await proxy(A, { service: ghConn, method: 'GET', path: '/user' });
    const after = lines.slice(from);
    expect(after.length).toBeGreaterThan(0);
    for (const l of after.filter((x) => x.startsWith('{'))) expect(() => JSON.parse(l)).not.toThrow();
    expect(after.some((l) => l.includes('"service":"credential-proxy"'))).toBe(true);
  });

  it('the connect link: a page where the human pastes the secret, CSRF-protected, once', async () => {
    const link = await call<{ url: string }>(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'from-link' });
    expect(link.status).toBe(201);
    const target = new URL(link.body.url);
    expect(target.origin).toBe('http://stack.test');
    const pageRes = await fetch(`${A.url}${target.pathname}${target.search}`);
    const html = await pageRes.text();
    expect(pageRes.status).toBe(200);
    // A browser then sends the page's own Origin on the post (with no-referrer it sends `null`).
    expect(pageRes.headers.get('referrer-policy')).toBe('same-origin');
    const cookie = (pageRes.headers.get('set-cookie') ?? '').split(';')[0]!;
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
    const token = target.searchParams.get('token')!;
    const post = (form: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(`${A.url}/v1/connections/connect`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() });
    // Without the cookie (a cross-site post) it is refused.
    expect((await post({ token, csrf, secret: OTHER_TOKEN })).status).toBe(403);
    expect((await post({ token, csrf, secret: OTHER_TOKEN }, { cookie, origin: 'https://evil.example' })).status).toBe(403);
    // An opaque origin (a sandboxed frame, a no-referrer page) stays refused.
    expect((await post({ token, csrf, secret: OTHER_TOKEN }, { cookie, origin: 'null' })).status).toBe(403);
    // What a browser sends from the page: STACK's own origin.
    const done = await post({ token, csrf, secret: OTHER_TOKEN }, { cookie, origin: 'http://stack.test' });
    expect(done.status).toBe(201);
    expect(await done.text()).not.toContain(OTHER_TOKEN);
    expect((await post({ token, csrf, secret: OTHER_TOKEN }, { cookie })).status).toBe(404);
    const conns = await call<{ items: Array<{ name: string }> }>(A, 'GET', '/v1/connections?service_id=github');
    expect(conns.body.items.map((c) => c.name)).toContain('from-link');
  });

  it('a connect link refuses a name already taken, and a paste that fails a check leaves the link usable', async () => {
    const taken = await call<{ error: { code: string; details?: { reason?: string } } }>(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'main' });
    expect(taken.status).toBe(400);
    expect(taken.body.error).toMatchObject({ code: 'INVALID_REQUEST', details: { reason: 'name_taken' } });
    const link = await call<{ url: string }>(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'retry-link' });
    expect(link.status).toBe(201);
    const target = new URL(link.body.url);
    const pageRes = await fetch(`${A.url}${target.pathname}${target.search}`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(await pageRes.text())![1]!;
    const cookie = (pageRes.headers.get('set-cookie') ?? '').split(';')[0]!;
    const token = target.searchParams.get('token')!;
    const post = (secret: string) =>
      fetch(`${A.url}/v1/connections/connect`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: 'http://stack.test' }, body: new URLSearchParams({ token, csrf, secret }).toString() });
    // Too long a secret: refused, the link still works.
    expect((await post('x'.repeat(9000))).status).toBe(400);
    const done = await post(OTHER_TOKEN);
    expect(done.status).toBe(201);
    expect((await post(OTHER_TOKEN)).status).toBe(404);
    // A name taken after the link was made: refused, and the link is not used up by it.
    const late = await call<{ url: string }>(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'late-name' });
    const lateTarget = new URL(late.body.url);
    const latePage = await fetch(`${A.url}${lateTarget.pathname}${lateTarget.search}`);
    const lateCsrf = /name="csrf" value="([^"]+)"/.exec(await latePage.text())![1]!;
    const lateCookie = (latePage.headers.get('set-cookie') ?? '').split(';')[0]!;
    expect((await call(A, 'POST', '/v1/connections', { service_id: 'github', name: 'late-name', credential: { token: GITHUB_TOKEN } })).status).toBe(201);
    const refused = await fetch(`${A.url}/v1/connections/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: lateCookie },
      body: new URLSearchParams({ token: lateTarget.searchParams.get('token')!, csrf: lateCsrf, secret: OTHER_TOKEN }).toString(),
    });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('already exists');
    expect((await fetch(`${A.url}${lateTarget.pathname}${lateTarget.search}`)).status).toBe(200);
  });

  it("a Jira connection needs its own site, and its credential reaches that site only — never another *.atlassian.net", async () => {
    const basic = { username: 'me@acme.test', password: 'jira-api-token-123' };
    const noSite = await call<{ error: { code: string; details?: { reason?: string } } }>(A, 'POST', '/v1/connections', { service_id: 'jira', name: 'nosite', credential: basic });
    expect(noSite.status).toBe(400);
    expect(noSite.body.error).toMatchObject({ code: 'INVALID_REQUEST', details: { reason: 'base_url_required' } });
    const noSiteLink = await call<{ error: { code: string; details?: { reason?: string } } }>(A, 'POST', '/v1/connections/connect-links', { service_id: 'jira', name: 'nosite' });
    expect(noSiteLink.body.error).toMatchObject({ code: 'INVALID_REQUEST', details: { reason: 'base_url_required' } });
    expect((await call(A, 'POST', '/v1/connections', { service_id: 'jira', name: 'elsewhere', base_url: 'https://acme.example.com', credential: basic })).status).toBe(400);
    const jira = await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'jira', name: 'acme', base_url: 'https://acme.atlassian.net', credential: basic });
    expect(jira.status).toBe(201);
    // Another tenant's site on the same domain is refused before any lookup or connect.
    const other = await proxy(A, { service: jira.body.id, method: 'GET', url: 'https://evil.atlassian.net/rest/api/3/myself' });
    expect(other.status).toBe(403);
    expect(other.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'host_not_allowed', host: 'evil.atlassian.net' } });
    // A link made for a site carries it to the page and into the connection.
    const link = await call<{ url: string }>(A, 'POST', '/v1/connections/connect-links', { service_id: 'jira', name: 'acme-link', base_url: 'https://acme.atlassian.net' });
    expect(link.status).toBe(201);
    const target = new URL(link.body.url);
    const pageRes = await fetch(`${A.url}${target.pathname}${target.search}`);
    const html = await pageRes.text();
    expect(html).toContain('https://acme.atlassian.net');
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
    const cookie = (pageRes.headers.get('set-cookie') ?? '').split(';')[0]!;
    const done = await fetch(`${A.url}/v1/connections/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: 'http://stack.test' },
      body: new URLSearchParams({ token: target.searchParams.get('token')!, csrf, ...basic }).toString(),
    });
    expect(done.status).toBe(201);
    const made = await call<{ items: Array<{ name: string; base_url?: string }> }>(A, 'GET', '/v1/connections?service_id=jira');
    expect(made.body.items.find((c) => c.name === 'acme-link')?.base_url).toBe('https://acme.atlassian.net');
  });

  describe('who may manage and see connections', () => {
    const OP_M = 'op_mgmt';
    let first: string;
    let second: string;
    const agentOf = (allowed: string[]): CallerContext => ({ issuer: 'passport', kind: 'agent', operator_id: OP_M, member_id: `mem_${OP_M}`, agent_id: 'agt_bot', passport_jti: 'ppt_mgmt', session_id: 'ses_m', scopes: ['stack:services', 'stack:dropoffs'], allowed_connections: allowed });
    const limited = (allowed: string[], scopes = ['stack:services']): CallerContext => ({ ...member(OP_M, scopes), allowed_connections: allowed });

    beforeAll(async () => {
      first = (await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'first', credential: { token: GITHUB_TOKEN } }, member(OP_M))).body.id;
      expect((await call(A, 'POST', '/v1/services', { service_id: 'anyhost', name: 'Any host', base_url: github.url, auth: { type: 'bearer' }, allowed_hosts: ['*'] }, member(OP_M))).status).toBe(201);
      second = (await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'anyhost', name: 'second', credential: { token: OTHER_TOKEN } }, member(OP_M))).body.id;
      expect(first).toMatch(/^scon_/);
      expect(second).toMatch(/^scon_/);
    });

    it('an agent (passport caller) cannot disconnect, create, link, verify or define services: FORBIDDEN', async () => {
      const agent = agentOf([first]);
      const del = await call<{ error: { code: string } }>(A, 'DELETE', `/v1/connections/${first}`, undefined, agent);
      expect(del.status).toBe(403);
      expect(del.body.error.code).toBe('FORBIDDEN');
      expect((await call(A, 'GET', `/v1/connections/${first}`, undefined, member(OP_M))).status).toBe(200);
      const created = await call<{ error: { code: string } }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'by-agent', credential: { token: GITHUB_TOKEN } }, agent);
      expect(created.status).toBe(403);
      expect(created.body.error.code).toBe('FORBIDDEN');
      expect((await call(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'by-agent' }, agent)).status).toBe(403);
      expect((await call(A, 'POST', '/v1/connections/oauth/start', { service_id: 'github', name: 'by-agent' }, agent)).status).toBe(403);
      expect((await call(A, 'POST', `/v1/connections/${first}/verify`, undefined, agent)).status).toBe(403);
      expect((await call(A, 'POST', '/v1/services', { service_id: 'agentsvc', name: 'x', base_url: github.url, auth: { type: 'bearer' } }, { ...agent, scopes: ['stack:admin'] })).status).toBe(403);
      // Over the bus too (stack_connect_service).
      await expect(A.bus.forService('mcp-gateway').request(CredentialProxyCommands.connectService, { service_id: 'slack', name: 'agent' }, { caller: agent })).rejects.toMatchObject({ code: 'FORBIDDEN' });
      const names = (await call<{ items: Array<{ name: string }> }>(A, 'GET', '/v1/connections', undefined, member(OP_M))).body.items.map((c) => c.name);
      expect(names).not.toContain('by-agent');
    });

    it('an agent sees only the connections its passport grants (REST and stack_list_services)', async () => {
      const agent = agentOf([first]);
      const list = await call<{ items: Array<{ id: string }> }>(A, 'GET', '/v1/connections', undefined, agent);
      expect(list.status).toBe(200);
      expect(list.body.items.map((c) => c.id)).toEqual([first]);
      expect((await call(A, 'GET', `/v1/connections/${second}`, undefined, agent)).status).toBe(404);
      const listing = await A.bus.forService('mcp-gateway').request(CredentialProxyCommands.listServices, {}, { caller: agent });
      expect(listing.items.flatMap((i) => i.connections.map((c) => c.id))).toEqual([first]);
      // An agent context that names no connections sees none.
      const bare: CallerContext = { issuer: 'mcp-gateway', kind: 'agent', operator_id: OP_M, agent_id: 'agt_bot', scopes: ['stack:services'] };
      const none = await A.bus.forService('mcp-gateway').request(CredentialProxyCommands.listServices, {}, { caller: bare });
      expect(none.items.flatMap((i) => i.connections)).toEqual([]);
    });

    it("a member's allowed_connections: others are NOT_FOUND to read and FORBIDDEN to use", async () => {
      const m = limited([first]);
      const list = await call<{ items: Array<{ id: string }> }>(A, 'GET', '/v1/connections', undefined, m);
      expect(list.body.items.map((c) => c.id)).toEqual([first]);
      expect((await call(A, 'GET', `/v1/connections/${first}`, undefined, m)).status).toBe(200);
      const hidden = await call<{ error: { code: string } }>(A, 'GET', `/v1/connections/${second}`, undefined, m);
      expect(hidden.status).toBe(404);
      expect(hidden.body.error.code).toBe('NOT_FOUND');
      const services = await call<{ items: Array<{ connections: Array<{ id: string }> }> }>(A, 'GET', '/v1/services', undefined, m);
      expect(services.body.items.flatMap((i) => i.connections.map((c) => c.id))).toEqual([first]);
      // Use: by id FORBIDDEN, by catalog id nothing usable.
      const byId = await proxy(A, { service: second, method: 'GET', path: '/user' }, m);
      expect(byId.status).toBe(403);
      expect(byId.body.error?.code).toBe('FORBIDDEN');
      expect((await proxy(A, { service: 'anyhost', method: 'GET', path: '/user' }, m)).status).toBe(404);
      expect((await proxy(A, { service: first, method: 'GET', path: '/user' }, m)).body.status).toBe(200);
      // Even with a passport that grants it.
      const withPassport = await proxy(A, { service: anyHostConn, method: 'GET', path: '/user', passport_token: passport([{ connection_id: anyHostConn, scopes: ['read'] }]) }, { ...member(OP), allowed_connections: [ghConn] });
      expect(withPassport.status).toBe(403);
      expect(withPassport.body.error?.code).toBe('FORBIDDEN');
      await expect(A.bus.forService('mcp-gateway').request(CredentialProxyCommands.proxyRequest, { service: second, method: 'GET', path: '/user' }, { caller: m })).rejects.toMatchObject({ code: 'FORBIDDEN' });
      expect((await call(A, 'POST', `/v1/connections/${second}/verify`, undefined, m)).status).toBe(403);
      expect((await call(A, 'DELETE', `/v1/connections/${second}`, undefined, m)).status).toBe(403);
      expect((await call(A, 'GET', `/v1/connections/${second}`, undefined, member(OP_M))).status).toBe(200);
      // An empty list: nothing.
      expect((await call<{ items: unknown[] }>(A, 'GET', '/v1/connections', undefined, limited([]))).body.items).toEqual([]);
    });

    it('a member limited to some connections cannot add one (REST, connect link, stack_connect_service, OAuth); an unlimited member can', async () => {
      const m = limited([first]);
      const refused = (res: Answer<{ error?: { code: string; details?: Record<string, unknown> } }>) => {
        expect(res.status).toBe(403);
        expect(res.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'connections_limited' } });
      };
      refused(await call(A, 'POST', '/v1/connections', { service_id: 'github', name: 'planted', credential: { token: GITHUB_TOKEN } }, m));
      refused(await call(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'planted' }, m));
      refused(await call(A, 'POST', '/v1/connections/oauth/start', { service_id: 'github', name: 'planted' }, m));
      await expect(A.bus.forService('mcp-gateway').request(CredentialProxyCommands.connectService, { service_id: 'github', name: 'planted' }, { caller: m })).rejects.toMatchObject({ code: 'FORBIDDEN' });
      const names = (await call<{ items: Array<{ name: string }> }>(A, 'GET', '/v1/connections', undefined, member(OP_M))).body.items.map((c) => c.name);
      expect(names).not.toContain('planted');
      expect((await call(A, 'POST', '/v1/connections/connect-links', { service_id: 'github', name: 'planted' }, member(OP_M))).status).toBe(201);
    });

    it('reading connections needs stack:services (or admin): stack:audit alone is FORBIDDEN', async () => {
      const auditor = member(OP_M, ['stack:audit']);
      const list = await call<{ error: { code: string } }>(A, 'GET', '/v1/connections', undefined, auditor);
      expect(list.status).toBe(403);
      expect(list.body.error.code).toBe('FORBIDDEN');
      expect((await call(A, 'GET', `/v1/connections/${first}`, undefined, auditor)).status).toBe(403);
      expect((await call(A, 'GET', '/v1/services', undefined, auditor)).status).toBe(403);
      expect((await call(A, 'GET', '/v1/connections', undefined, member(OP_M, ['stack:admin']))).status).toBe(200);
    });
  });

  describe('upstream OAuth (STACK as the client)', () => {
    let oauthConn: string;

    beforeAll(async () => {
      // Starting an upstream OAuth connection needs the stack:services grant, as the other ways of connecting do.
      const unscoped = await call<{ error: { code: string } }>(A, 'POST', '/v1/connections/oauth/start', { service_id: 'github', name: 'oauth' }, member(OP, ['stack:passports']));
      expect({ status: unscoped.status, code: unscoped.body.error.code }).toEqual({ status: 403, code: 'FORBIDDEN' });
      const start = await call<{ url: string; authorize_url: string }>(A, 'POST', '/v1/connections/oauth/start', { service_id: 'github', name: 'oauth' });
      expect(start.status).toBe(201);
      // STACK's page, not the provider's: the provider's URL comes only from pressing Continue on it.
      expect(start.body.url).toMatch(/^http:\/\/stack\.test\/v1\/connections\/oauth\/confirm\?state=/);
      expect(start.body.authorize_url).toBe(start.body.url);
      const { html, providerUrl, callback, done } = await browseOAuth(A, start.body.url);
      expect(html).toContain(OP);
      expect(html).toContain(`mem_${OP}`);
      expect(html).toContain('“<strong>oauth</strong>”');
      expect(new URL(providerUrl).searchParams.get('code_challenge_method')).toBe('S256');
      expect(callback.pathname).toBe('/v1/connections/oauth/callback');
      expect(done.status).toBe(200);
      const list = await call<{ items: Array<{ id: string; name: string; kind: string }> }>(A, 'GET', '/v1/connections?service_id=github');
      oauthConn = list.body.items.find((c) => c.name === 'oauth')!.id;
      expect(list.body.items.find((c) => c.name === 'oauth')!.kind).toBe('oauth2');
    });

    it('login CSRF: a provider URL opened in a browser that did not press Continue on STACK’s page connects nothing', async () => {
      const op = 'op_csrf';
      const start = await call<{ url: string }>(A, 'POST', '/v1/connections/oauth/start', { service_id: 'github', name: 'lured' }, member(op));
      const target = new URL(start.body.url);
      const state = target.searchParams.get('state')!;
      const pageRes = await fetch(`${A.url}${target.pathname}${target.search}`);
      const csrf = /name="csrf" value="([^"]+)"/.exec(await pageRes.text())![1]!;
      const post = (headers: Record<string, string>) =>
        fetch(`${A.url}/v1/connections/oauth/confirm`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams({ state, csrf }).toString() });
      // Continue posted from another site, or without the page's cookie, is refused.
      const pageCookie = pageRes.headers.getSetCookie()[0]!.split(';')[0]!;
      expect((await post({})).status).toBe(403);
      expect((await post({ cookie: pageCookie, origin: 'https://evil.example' })).status).toBe(403);
      // The member of op_csrf presses Continue in their own browser and sends the provider URL to a victim.
      const cont = await post({ cookie: pageCookie });
      expect(cont.status).toBe(303);
      const approved = await fetch(cont.headers.get('location')!, { redirect: 'manual' });
      const callback = new URL(approved.headers.get('location')!);
      // The victim's browser arrives without the binding cookie: an error page, nothing stored.
      const victim = await fetch(`${A.url}${callback.pathname}${callback.search}`);
      expect(victim.status).toBe(403);
      expect(await victim.text()).toContain('not continued from this browser');
      const forged = await fetch(`${A.url}${callback.pathname}${callback.search}`, { headers: { cookie: `stack_oauth_b_x=${randomBytes(24).toString('base64url')}` } });
      expect(forged.status).toBe(403);
      expect((await call<{ items: unknown[] }>(A, 'GET', '/v1/connections?service_id=github', undefined, member(op))).body.items).toEqual([]);
      // Continue works once: a second browser cannot take the authorization over.
      expect((await post({ cookie: pageCookie })).status).not.toBe(303);
    });

    it('refreshes an expired token once while 20 concurrent calls on two replicas wait for it', async () => {
      oauth.expireAll();
      await A.dataSources.get('credential-proxy')!.query(`UPDATE credential_proxy.connections SET expires_at = now() - interval '1 second' WHERE id = $1`, [oauthConn]);
      oauth.refreshDelayMs = 300;
      const refreshesBefore = oauth.refreshCount;
      const calls = Array.from({ length: 20 }, (_, i) => proxy(i % 2 ? A2 : A, { service: oauthConn, method: 'GET', path: '/user' }));
      const answers = await Promise.all(calls);
      expect(answers.map((a) => a.body.status)).toEqual(Array(20).fill(200));
      expect(oauth.refreshCount - refreshesBefore).toBe(1);
      oauth.refreshDelayMs = 0;
    });

    it('keeps the connection when the provider is down during a refresh, and refreshes once it is back', async () => {
      await A.dataSources.get('credential-proxy')!.query(`UPDATE credential_proxy.connections SET expires_at = now() - interval '1 second' WHERE id = $1`, [oauthConn]);
      for (const status of [503, 429]) {
        oauth.outageStatus = status;
        const res = await proxy(A, { service: oauthConn, method: 'GET', path: '/user' });
        expect({ status: res.status, code: res.body.error?.code, upstream: res.body.error?.details?.upstream_status }).toEqual({ status: 502, code: 'UPSTREAM_ERROR', upstream: status });
        expect((await call<{ status: string }>(A, 'GET', `/v1/connections/${oauthConn}`)).body.status).not.toBe('needs_reauth');
      }
      oauth.outageStatus = undefined;
      const back = await proxy(A, { service: oauthConn, method: 'GET', path: '/user' });
      expect(back.body.status).toBe(200);
    });

    it('marks the connection needs_reauth when the provider refuses the refresh', async () => {
      await A.dataSources.get('credential-proxy')!.query(`UPDATE credential_proxy.connections SET expires_at = now() - interval '1 second' WHERE id = $1`, [oauthConn]);
      oauth.failRefresh = true;
      const res = await proxy(A, { service: oauthConn, method: 'GET', path: '/user' });
      oauth.failRefresh = false;
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ code: 'FORBIDDEN', details: { reason: 'needs_reauth' } });
      expect((await call<{ status: string }>(A, 'GET', `/v1/connections/${oauthConn}`)).body.status).toBe('needs_reauth');
      // The operator's log says why: the provider's status and error code, with the connection.
      const refused = lines.flatMap((l) => (l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [])).find((l) => l.connection_id === oauthConn && String(l.msg).startsWith('oauth: the provider refused the token refresh'));
      expect(refused).toMatchObject({ service: 'github', status: 400, oauth_error: 'invalid_grant' });
    });
  });

  it('replaceSecret (a token refresh) stores the scopes given with the secret, keeps them when none are given, and says when the connection is gone', async () => {
    const op = 'op_zeta';
    const created = await call<{ id: string }>(A, 'POST', '/v1/connections', { service_id: 'github', name: 'scoped', credential: { token: GITHUB_TOKEN } }, member(op));
    const repo = new ConnectionRepository(A.dataSources.get('credential-proxy')!);
    const row = (await repo.find(op, created.body.id))!;
    expect(row.scopes).toEqual([]);
    expect(await repo.replaceSecret(op, row.id, row.secret, null, { scopes: ['repo', 'gist'] })).toBe(true);
    expect((await repo.find(op, row.id))!.scopes).toEqual(['repo', 'gist']);
    expect(await repo.replaceSecret(op, row.id, row.secret, null)).toBe(true);
    expect((await repo.find(op, row.id))!.scopes).toEqual(['repo', 'gist']);
    expect((await call(A, 'DELETE', `/v1/connections/${row.id}`, undefined, member(op))).status).toBe(200);
    expect(await repo.replaceSecret(op, row.id, row.secret, null, { scopes: ['repo'] })).toBe(false);
  });

  it('rotates the master key without downtime: add a key, re-wrap in the background, retire the old one', async () => {
    const oldKeys = keys;
    const k2 = `k2:${randomBytes(32).toString('base64')}`;
    // Step 1: a replica rolled out with the new key first (the old one kept) re-wraps at start.
    const C = await startStack({ available: [createCredentialProxyService({ resolver })], env: env({ STACK_BUS_PREFIX: uniqueName('cpc'), STACK_MASTER_KEYS: `${k2},${oldKeys}`, STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32' }) });
    try {
      const calls: Array<Promise<Answer<ProxyResponse>>> = [];
      const ds = C.dataSources.get('credential-proxy')!;
      const byKey = async () => Object.fromEntries(((await ds.query(`SELECT key_id, count(*)::int AS n FROM credential_proxy.connections GROUP BY key_id`)) as Array<{ key_id: string; n: number }>).map((r) => [r.key_id, r.n]));
      // Calls keep working while the background re-wrap runs.
      for (let i = 0; i < 40 && (await byKey()).k1 !== undefined; i++) {
        calls.push(proxy(C, { service: ghConn, method: 'GET', path: '/user' }));
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(await byKey()).not.toHaveProperty('k1');
      expect((await Promise.all(calls)).every((a) => a.body.status === 200)).toBe(true);
    } finally {
      await C.stop();
    }
    // Step 3: the old key retired; everything still opens.
    const D = await startStack({ available: [createCredentialProxyService({ resolver })], env: env({ STACK_BUS_PREFIX: uniqueName('cpd'), STACK_MASTER_KEYS: k2, STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32' }) });
    try {
      const res = await proxy(D, { service: ghConn, method: 'GET', path: '/echo' });
      expect(res.body.status).toBe(200);
      expect(github.requests.at(-1)!.headers.authorization).toBe(`Bearer ${GITHUB_TOKEN}`);
    } finally {
      await D.stop();
    }
    // `stack admin rotate-master-key --status` sees every connection under the new key.
    const saved = { ...process.env };
    const written: string[] = [];
    const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      Object.assign(process.env, { DATABASE_URL: db.url, STACK_MASTER_KEYS: k2, STACK_SERVICES: 'credential-proxy', NATS_URL: TEST_NATS_URL, STACK_INTERNAL_SECRET: internalSecret, LOG_LEVEL: 'error' });
      expect(await rotateMasterKeyCommand.run(['--status'], [service])).toBe(0);
      expect(await rotateMasterKeyCommand.run(['--rewrap'], [service])).toBe(0);
    } finally {
      write.mockRestore();
      process.env = saved;
    }
    expect(written.join('')).toMatch(/current key: k2\n\s+k2: \d+ connection\(s\)\n/);
    expect(written.join('')).toContain('re-wrapped 0');
  });

  it('no log line of the run holds a secret', () => {
    expect(lines.length).toBeGreaterThan(20);
    const secrets = [GITHUB_TOKEN, OTHER_TOKEN, OAUTH_CLIENT_SECRET, ...oauth.issuedSecrets()];
    const leaks = lines.filter((l) => secrets.some((s) => l.includes(s)));
    expect(leaks).toEqual([]);
  });
});
