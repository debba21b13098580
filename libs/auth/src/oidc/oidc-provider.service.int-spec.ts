/**
 * The authorization server as a client meets it, on the real Postgres, NATS and Redis (auth
 * alone, started as in production): the registration policy and the default scopes hold on
 * every spelling of their paths the router accepts, registration is capped in size and rate
 * per client address, consent never asks again for a scope the member's role withholds, a
 * sign-in lockout never locks a member out of a browser they signed in on before, and a
 * just-rotated refresh token keeps its one grace resend whoever introspected or tried to revoke it.
 */
import { createHash, randomBytes } from 'node:crypto';

import { DEFAULT_SCOPES } from '@stack/contracts';
import { startStack, type RunningStack } from '@stack/runtime';
import { TEST_NATS_URL, TEST_REDIS_URL, createTestDatabase, freePort, uniqueName, type TestDatabase } from '@stack/testing';

import { AccountsService } from '../accounts/accounts.service';
import { authService } from '../index';
import { REGISTRATION_BUCKET } from './oidc-provider.service';

const OWNER = { email: 'owner@oidc.test', password: 'correct horse battery staple 42' };
const REDIRECT = 'http://127.0.0.1:9/callback';

describe('Authorization server (auth on the real Postgres, NATS and Redis)', () => {
  let db: TestDatabase;
  let stack: RunningStack;
  let base: string;

  beforeAll(async () => {
    db = await createTestDatabase('stack_auth_oidc');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    stack = await startStack({
      available: [authService],
      env: {
        STACK_SERVICES: 'auth',
        STACK_PUBLIC_URL: base,
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: db.url,
        NATS_URL: TEST_NATS_URL,
        REDIS_URL: TEST_REDIS_URL,
        STACK_BUS_PREFIX: uniqueName('oidc'),
        STACK_INTERNAL_SECRET: randomBytes(32).toString('base64'),
        STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
        // The test's own requests name their client address, so each test has its own budget.
        STACK_TRUSTED_PROXIES: '127.0.0.1/32',
        STACK_BOOTSTRAP_OWNER_EMAIL: OWNER.email,
        STACK_BOOTSTRAP_OWNER_PASSWORD: OWNER.password,
        LOG_LEVEL: 'warn',
      },
    });
  });

  afterAll(async () => {
    await stack?.stop();
    await db?.drop();
  });

  const register = (path: string, metadata: unknown, address: string, raw?: string) =>
    fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': address }, body: raw ?? JSON.stringify(metadata) });
  const publicClient = (name = 'Test client', redirectUris = [REDIRECT]) => ({ client_name: name, redirect_uris: redirectUris, token_endpoint_auth_method: 'none' });

  it('applies the registration policy on every spelling of the path the router accepts', async () => {
    const attacks = [
      // A web client with a plain-http redirect anywhere, and a client secret.
      { client_name: 'Attacker', application_type: 'web', redirect_uris: ['http://attacker.example/callback'], token_endpoint_auth_method: 'client_secret_basic' },
      { client_name: 'Attacker', application_type: 'web', redirect_uris: ['http://attacker.example/callback'] },
      { client_name: 'Attacker', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'client_secret_post' },
    ];
    for (const path of ['/oauth/register', '/oauth/register/', '/oauth/Register', '/oauth/REGISTER/']) {
      for (const body of attacks) {
        const res = await register(path, body, '198.51.100.1');
        const answer = (await res.json()) as { error?: string; client_secret?: string };
        expect({ path, status: res.status, secret: answer.client_secret }).toEqual({ path, status: 400, secret: undefined });
        expect(answer.error).toMatch(/^invalid_(client_metadata|redirect_uri)$/);
      }
      // A public client with a loopback redirect is still welcome there.
      const ok = await register(path, publicClient(), '198.51.100.1');
      expect({ path, status: ok.status }).toEqual({ path, status: 201 });
      expect(((await ok.json()) as { token_endpoint_auth_method: string }).token_endpoint_auth_method).toBe('none');
    }
    const rows = (await stack.dataSources.get('auth')!.query(`SELECT payload FROM auth.oidc_payloads WHERE model = 'Client'`)) as { payload: { redirect_uris: string[] } }[];
    expect(rows.flatMap((r) => r.payload.redirect_uris).filter((u) => u !== REDIRECT)).toEqual([]);
  });

  it('gives a client that sends no scope the default scopes on every spelling of the authorization path', async () => {
    const client = (await (await register('/oauth/register', publicClient(), '198.51.100.2')).json()) as { client_id: string };
    const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
    for (const path of ['/oauth/authorize', '/oauth/authorize/', '/oauth/Authorize']) {
      const url = new URL(`${base}${path}`);
      for (const [k, v] of Object.entries({ client_id: client.client_id, redirect_uri: REDIRECT, response_type: 'code', code_challenge: challenge, code_challenge_method: 'S256', state: 's' })) url.searchParams.set(k, v);
      const res = await fetch(url, { redirect: 'manual' });
      const location = res.headers.get('location') ?? '';
      expect({ path, status: res.status, location }).toEqual({ path, status: 303, location: expect.stringMatching(/\/login\?uid=/) });
      const uid = new URL(location, base).searchParams.get('uid');
      const rows = (await stack.dataSources.get('auth')!.query(`SELECT payload FROM auth.oidc_payloads WHERE model = 'Interaction' AND id = $1`, [uid])) as { payload: { params: { scope?: string } } }[];
      expect({ path, scopes: (rows[0]?.payload.params.scope ?? '').split(' ') }).toEqual({ path, scopes: expect.arrayContaining([...DEFAULT_SCOPES]) });
    }
  });

  it('refuses an oversized registration: the body, the number of redirect URIs, a long name or URI', async () => {
    const address = '198.51.100.3';
    const big = await register('/oauth/register', { ...publicClient(), client_name: 'x'.repeat(100 * 1024) }, address);
    expect(big.status).toBe(413);
    expect(await big.json()).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: expect.any(String) } });
    // Padding alone counts too: what matters is what reaches the server.
    const padded = await register('/oauth/register/', undefined, address, `${JSON.stringify(publicClient())}${' '.repeat(70 * 1024)}`);
    expect(padded.status).toBe(413);
    const cases: [string, unknown][] = [
      ['21 redirect URIs', publicClient('Many', Array.from({ length: 21 }, (_, i) => `http://127.0.0.1:${1000 + i}/callback`))],
      ['a 201-character name', publicClient('n'.repeat(201))],
      ['a 2,001-character redirect URI', publicClient('Long', [`http://127.0.0.1:9/${'p'.repeat(2001 - 'http://127.0.0.1:9/'.length)}`])],
      ['a 2,001-character client_uri', { ...publicClient(), client_uri: `https://example.com/${'p'.repeat(2001 - 'https://example.com/'.length)}` }],
    ];
    for (const [what, body] of cases) {
      const res = await register('/oauth/register', body, address);
      expect({ what, status: res.status }).toEqual({ what, status: 400 });
      expect(((await res.json()) as { error: string }).error).toMatch(/^invalid_(client_metadata|redirect_uri)$/);
    }
    // At the limits, accepted.
    const edge = publicClient('n'.repeat(200), Array.from({ length: 20 }, (_, i) => `http://127.0.0.1:${2000 + i}/${'p'.repeat(1000)}`));
    expect((await register('/oauth/register', edge, address)).status).toBe(201);
  });

  it('limits registrations per client address: RATE_LIMITED with Retry-After, other addresses unaffected', async () => {
    const address = '198.51.100.4';
    for (let i = 0; i < REGISTRATION_BUCKET.capacity; i++) {
      expect((await register('/oauth/register', publicClient(`Client ${i}`), address)).status).toBe(201);
    }
    // Every spelling of the path draws on the same budget, refused metadata too.
    for (const path of ['/oauth/register', '/oauth/register/', '/oauth/Register']) {
      const refused = await register(path, publicClient('One more'), address);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await refused.json()).toEqual({ error: { code: 'RATE_LIMITED', message: expect.any(String), details: { retry_after_s: expect.any(Number) } } });
    }
    expect((await register('/oauth/register', publicClient('Elsewhere'), '198.51.100.5')).status).toBe(201);
  });

  const CSRF = randomBytes(32).toString('base64url');

  /** A browser's part by hand: cookies kept by name, redirects followed one at a time. */
  class Agent {
    private readonly cookies = new Map<string, string>([['stack_csrf', CSRF]]);

    has(name: string): boolean {
      return this.cookies.has(name);
    }

    async go(url: string, form?: Record<string, string | string[]>, extra: Record<string, string> = {}): Promise<Response> {
      const headers: Record<string, string> = { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '), ...extra };
      let body: URLSearchParams | undefined;
      if (form) {
        body = new URLSearchParams();
        for (const [k, v] of Object.entries(form)) for (const one of [v].flat()) body.append(k, one);
        headers['content-type'] = 'application/x-www-form-urlencoded';
      }
      const res = await fetch(new URL(url, base), { method: form ? 'POST' : 'GET', headers, body, redirect: 'manual' });
      for (const cookie of res.headers.getSetCookie()) {
        const pair = cookie.split(';')[0]!;
        const name = pair.slice(0, pair.indexOf('='));
        const value = pair.slice(pair.indexOf('=') + 1);
        if (!value || /expires=Thu, 01 Jan 1970/i.test(cookie)) this.cookies.delete(name);
        else this.cookies.set(name, value);
      }
      return res;
    }
  }

  /**
   * One authorization: sign in, tick `tick` on every consent screen, until the client gets its
   * code; the scopes of the access token it then gets, and how many consent screens it took.
   */
  /** The token endpoint's answer of the last authorization. */
  let lastTokenResponse: { access_token: string; refresh_token?: string } | undefined;

  /** The last consent page an authorization showed. */
  let lastConsentPage = '';

  async function authorize(clientId: string, member: { email: string; password: string }, scope: string, tick: string[], redirect = REDIRECT): Promise<{ consents: number; shown: string[]; scopes: string[] }> {
    const verifier = randomBytes(32).toString('base64url');
    const url = new URL(`${base}/oauth/authorize`);
    const params = { client_id: clientId, redirect_uri: redirect, response_type: 'code', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', state: 's', scope };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const agent = new Agent();
    let res = await agent.go(url.toString());
    let consents = 0;
    let shown: string[] = [];
    for (let step = 0; step < 20; step++) {
      expect(res.status).toBe(303);
      const next = new URL(res.headers.get('location')!, base);
      if (next.href.startsWith(redirect)) {
        const code = next.searchParams.get('code');
        expect(code).toEqual(expect.any(String));
        const token = await fetch(`${base}/oauth/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'authorization_code', code: code!, redirect_uri: redirect, client_id: clientId, code_verifier: verifier }),
        });
        expect(token.status).toBe(200);
        const body = (await token.json()) as { access_token: string; refresh_token?: string };
        lastTokenResponse = body;
        const { access_token } = body;
        const claims = JSON.parse(Buffer.from(access_token.split('.')[1]!, 'base64url').toString('utf8')) as { scope: string };
        return { consents, shown, scopes: claims.scope.split(' ').sort() };
      }
      if (next.pathname === '/login') {
        res = await agent.go(next.href, { email: member.email, password: member.password, csrf: CSRF });
      } else if (next.pathname === '/consent') {
        // Stop a loop rather than follow it.
        if (++consents > 3) return { consents, shown, scopes: [] };
        const page = await (await agent.go(next.href)).text();
        lastConsentPage = page;
        shown = [...page.matchAll(/name="scope" value="([^"]+)"/g)].map((m) => m[1]!);
        res = await agent.go(next.href, { csrf: CSRF, scope: tick, decision: 'approve' });
      } else {
        res = await agent.go(next.href);
      }
    }
    throw new Error('too many redirects');
  }

  describe('sign-in', () => {
    const login = (agent: Agent, email: string, password: string, address: string) => agent.go('/login', { email, password, csrf: CSRF }, { 'x-forwarded-for': address });

    it('locks an account out after five failures, but not on a browser that signed in to it before (device cookie)', async () => {
      // A member of its own: the lock would hold the owner the other tests sign in as.
      const accounts = stack.app.get(AccountsService, { strict: false });
      const owner = (await accounts.findMemberForLogin(OWNER.email))!;
      const invitation = await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.id, email: 'locked@oidc.test', name: 'Locked', role: 'standard' });
      const member = await accounts.acceptInvitation(invitation.token, OWNER.password);
      const USER = { email: member.email, password: OWNER.password };
      const mine = new Agent();
      expect((await login(mine, USER.email, USER.password, '203.0.113.10')).status).toBe(200);
      expect(mine.has('stack_device')).toBe(true);
      // Someone else, from anywhere, fails five times: the account is locked for every browser without the cookie.
      const attacker = new Agent();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await login(attacker, USER.email, `wrong-${i}-password-guess`, `203.0.113.${20 + i}`)).status);
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
      expect((await login(attacker, USER.email, USER.password, '203.0.113.30')).status).toBe(429);
      expect((await login(new Agent(), USER.email, USER.password, '203.0.113.31')).status).toBe(429);
      // The member's own browser still signs in.
      expect((await login(mine, USER.email, USER.password, '203.0.113.10')).status).toBe(200);
      // Its own failures lock that browser alone.
      const own: number[] = [];
      for (let i = 0; i < 6; i++) own.push((await login(mine, USER.email, `mine-${i}-wrong-password`, '203.0.113.10')).status);
      expect(own).toEqual([401, 401, 401, 401, 401, 429]);
      expect((await login(mine, USER.email, USER.password, '203.0.113.10')).status).toBe(429);
    });
  });

  describe('interaction binding', () => {
    it("does not let a member's sign-in or approval on their own browser finish an authorization begun in another (the attacker's) browser", async () => {
      const clientId = ((await (await register('/oauth/register', publicClient('Phishing client'), '198.51.100.8')).json()) as { client_id: string }).client_id;
      const url = new URL(`${base}/oauth/authorize`);
      const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
      for (const [k, v] of Object.entries({ client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', code_challenge: challenge, code_challenge_method: 'S256', state: 's', scope: 'stack:services' })) url.searchParams.set(k, v);
      // The attacker starts an authorization and sends the sign-in link to a member.
      const attacker = new Agent();
      const start = await attacker.go(url.toString());
      const loginUrl = new URL(start.headers.get('location')!, base);
      expect(loginUrl.pathname).toBe('/login');
      const victim = new Agent();
      expect((await victim.go(loginUrl.href)).status).toBe(400);
      const signIn = await victim.go(loginUrl.href, { email: OWNER.email, password: OWNER.password, csrf: CSRF });
      expect(signIn.status).toBe(400);
      // The attacker's browser resumes: it is still not signed in as the member.
      const resumed = await attacker.go(new URL(`/oauth/authorize/${loginUrl.searchParams.get('uid')}`, base).href);
      expect(resumed.status).toBe(303);
      expect(new URL(resumed.headers.get('location')!, base).pathname).toBe('/login');
    });
  });

  describe('consent', () => {
    let accounts: AccountsService;
    let clientId: string;

    beforeAll(async () => {
      accounts = stack.app.get(AccountsService, { strict: false });
      clientId = ((await (await register('/oauth/register', publicClient('Consent client'), '198.51.100.6')).json()) as { client_id: string }).client_id;
    });

    const join = async (email: string, role: 'admin' | 'standard') => {
      const owner = (await accounts.findMemberForLogin(OWNER.email))!;
      const invitation = await accounts.invite({ operatorId: owner.operator_id, invitedBy: owner.id, email, name: email, role });
      return accounts.acceptInvitation(invitation.token, OWNER.password);
    };

    it.each(['cursor://anysphere.cursor-retrieval/oauth/user-stack/callback', 'com.example.mcp:/oauth2redirect'])(
      "lets a native client register its app's own scheme (RFC 8252), names it on the consent page and sends the code there: %s",
      async (redirect) => {
        const res = await register('/oauth/register', publicClient('Editor', [redirect]), '198.51.100.8');
        expect(res.status).toBe(201);
        const { client_id } = (await res.json()) as { client_id: string };
        expect(await authorize(client_id, OWNER, 'stack:services', ['stack:services'], redirect)).toEqual({ consents: 1, shown: ['stack:services'], scopes: ['stack:services'] });
        expect(lastConsentPage).toContain(`returning to <strong>${redirect.replace(/\?.*$/, '')}</strong>`);
      },
    );

    it('refuses a registration whose redirect URI is a scheme the browser or system handles itself', async () => {
      for (const redirect of ['javascript:alert(1)', 'data:text/html,x', 'file:///tmp/x', 'https://user:pass@app.example/cb']) {
        const res = await register('/oauth/register', publicClient('Attacker', [redirect]), '198.51.100.8');
        expect({ redirect, status: res.status, error: ((await res.json()) as { error: string }).error }).toEqual({ redirect, status: 400, error: 'invalid_redirect_uri' });
      }
    });

    it('gives a standard member asked for stack:admin a code without it after one consent (no loop), and stack:admin once promoted', async () => {
      const member = await join('dev@oidc.test', 'standard');
      const dev = { email: member.email, password: OWNER.password };
      const first = await authorize(clientId, dev, 'stack:services stack:admin', ['stack:services']);
      expect(first).toEqual({ consents: 1, shown: ['stack:services'], scopes: ['stack:services'] });
      // Asked again (a step-up after 403 insufficient_scope), even with stack:admin forced into the form.
      expect(await authorize(clientId, dev, 'stack:services stack:admin', ['stack:services', 'stack:admin'])).toEqual({ consents: 1, shown: ['stack:services'], scopes: ['stack:services'] });
      // Promoted, the member is offered stack:admin on the same client, and gets it.
      await accounts.updateMember(member.operator_id, member.id, { role: 'admin' });
      expect(await authorize(clientId, dev, 'stack:services stack:admin', ['stack:services', 'stack:admin'])).toEqual({ consents: 1, shown: ['stack:services', 'stack:admin'], scopes: ['stack:admin', 'stack:services'] });
    });

    it('gives a client that asks for offline_access without prompt=consent a refresh token (MCP clients sign in once, not hourly)', async () => {
      // No prompt: oidc-provider alone would drop offline_access and issue no refresh token.
      expect(await authorize(clientId, OWNER, 'stack:services offline_access', ['stack:services', 'offline_access'])).toMatchObject({ consents: 1, shown: ['stack:services', 'offline_access'] });
      expect(lastTokenResponse?.refresh_token).toEqual(expect.any(String));
      // The member may still refuse it on the consent screen.
      await authorize(clientId, OWNER, 'stack:services offline_access', ['stack:services']);
      expect(lastTokenResponse?.refresh_token).toBeUndefined();
    });

    it('asks once of a client that names both resources (RFC 8707), and its refresh token then serves either', async () => {
      const verifier = randomBytes(32).toString('base64url');
      const url = new URL(`${base}/oauth/authorize`);
      for (const [k, v] of Object.entries({ client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256', state: 's', scope: 'stack:services offline_access' })) url.searchParams.set(k, v);
      url.searchParams.append('resource', `${base}/mcp`);
      url.searchParams.append('resource', `${base}/v1`);
      const agent = new Agent();
      let res = await agent.go(url.toString());
      let consents = 0;
      let code: string | null = null;
      for (let step = 0; step < 12 && !code; step++) {
        const next = new URL(res.headers.get('location')!, base);
        if (next.href.startsWith(REDIRECT)) code = next.searchParams.get('code');
        else if (next.pathname === '/login') res = await agent.go(next.href, { email: OWNER.email, password: OWNER.password, csrf: CSRF });
        else if (next.pathname === '/consent') {
          consents++;
          res = await agent.go(next.href, { csrf: CSRF, scope: ['stack:services', 'offline_access'], decision: 'approve' });
        } else res = await agent.go(next.href);
      }
      expect({ consents, code: typeof code }).toEqual({ consents: 1, code: 'string' });
      const token = async (fields: Record<string, string>) => {
        const r = await fetch(`${base}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: clientId, ...fields }) });
        expect(r.status).toBe(200);
        const body = (await r.json()) as { access_token: string; refresh_token?: string };
        return { ...body, claims: JSON.parse(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString('utf8')) as { aud: string; scope: string } };
      };
      const first = await token({ grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT, code_verifier: verifier, resource: `${base}/mcp` });
      expect(first.claims).toMatchObject({ aud: `${base}/mcp`, scope: 'stack:services' });
      const api = await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token!, resource: `${base}/v1` });
      expect(api.claims).toMatchObject({ aud: `${base}/v1`, scope: 'stack:services' });
    });

    it('lets an owner who unticked stack:admin tick it next time and get it', async () => {
      expect(await authorize(clientId, OWNER, 'stack:services stack:admin', ['stack:services'])).toEqual({ consents: 1, shown: ['stack:services', 'stack:admin'], scopes: ['stack:services'] });
      expect(await authorize(clientId, OWNER, 'stack:services stack:admin', ['stack:services', 'stack:admin'])).toEqual({ consents: 1, shown: ['stack:services', 'stack:admin'], scopes: ['stack:admin', 'stack:services'] });
    });
  });

  describe('refresh-token grace', () => {
    const post = (path: string, fields: Record<string, string>) =>
      fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });
    const newClient = async (name: string) => ((await (await register('/oauth/register', publicClient(name), '198.51.100.7')).json()) as { client_id: string }).client_id;

    // Each lookup, and what oidc-provider answers it about a rotated token: inactive, nothing revoked.
    it.each([
      ['introspected by its own client', 'own', '/oauth/introspect', 200, { active: false }],
      ['introspected by another client', 'other', '/oauth/introspect', 200, { active: false }],
      ['sent for revocation by another client', 'other', '/oauth/revoke', 200, ''],
      ['redeemed by another client', 'other', '/oauth/token', 400, { error: 'invalid_grant', error_description: 'grant request is invalid' }],
    ] as const)('lets a client resend its just-rotated refresh token once after it was %s, and revokes the grant on a second resend', async (_what, caller, path, status, expected) => {
      const clientId = await newClient(`Grace ${path} ${caller}`);
      const otherId = await newClient('Someone else');
      const refresh = (token: string, client = clientId) => post('/oauth/token', { grant_type: 'refresh_token', refresh_token: token, client_id: client });
      await authorize(clientId, OWNER, 'stack:services offline_access', ['stack:services', 'offline_access']);
      const rotatedToken = lastTokenResponse!.refresh_token!;
      const rotation = await refresh(rotatedToken);
      expect(rotation.status).toBe(200);
      const current = ((await rotation.json()) as { refresh_token: string }).refresh_token;

      const asker = caller === 'own' ? clientId : otherId;
      const lookup = path === '/oauth/token' ? await refresh(rotatedToken, asker) : await post(path, { token: rotatedToken, token_type_hint: 'refresh_token', client_id: asker });
      const answer = path === '/oauth/revoke' ? await lookup.text() : await lookup.json();
      // The client's own resend within the grace: a fresh pair, the grant intact.
      const resend = await refresh(rotatedToken);
      expect({ lookup: lookup.status, answer, resend: resend.status }).toEqual({ lookup: status, answer: expected, resend: 200 });
      const graced = ((await resend.json()) as { refresh_token: string }).refresh_token;
      expect(graced).toEqual(expect.any(String));
      // A second resend is reuse: refused, and every token of the grant dies with it.
      const reuse = await refresh(rotatedToken);
      expect({ status: reuse.status, error: ((await reuse.json()) as { error: string }).error }).toEqual({ status: 400, error: 'invalid_grant' });
      for (const token of [graced, current]) expect((await refresh(token)).status).toBe(400);
    });
  });
});
