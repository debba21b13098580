/**
 * Credential-proxy checks shared by the one-process and distributed suites: a connection is
 * answered without its secret, the proxy injects it (the fake upstream sees it, the caller never
 * does), another operator's connection is 404, an expired upstream OAuth token is refreshed once
 * while 20 concurrent calls wait, a connect link works in a real browser, and no log line of any
 * process holds a secret.
 */
import { randomBytes } from 'node:crypto';

import type { CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';
import type { Browser } from 'playwright-core';
import { FakeOAuthProvider, startFakeGitHub, type FakeGitHub } from '@stack/testing';

export interface ProxyFixture {
  github: FakeGitHub;
  oauth: FakeOAuthProvider;
  token: string;
  clientSecret: string;
  internalSecret: string;
  /** Environment every STACK process of the suite needs. */
  env: Record<string, string>;
  secrets(): string[];
  close(): Promise<void>;
}

export async function startProxyFixture(): Promise<ProxyFixture> {
  const token = `ghp_${randomBytes(16).toString('hex')}`;
  const clientSecret = `cs_${randomBytes(12).toString('hex')}`;
  const internalSecret = randomBytes(32).toString('base64');
  const oauth = new FakeOAuthProvider({ clientId: 'stack-e2e', clientSecret });
  const github = await startFakeGitHub({ tokens: [token], oauth });
  return {
    github,
    oauth,
    token,
    clientSecret,
    internalSecret,
    env: {
      STACK_INTERNAL_SECRET: internalSecret,
      STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32',
      STACK_SERVICE_BASE_URLS: `github=${github.url}`,
      STACK_UPSTREAM_OAUTH_CLIENTS: `github=stack-e2e:${clientSecret}`,
    },
    secrets: () => [token, clientSecret, ...oauth.issuedSecrets()],
    close: () => github.close(),
  };
}

export class ProxyClient {
  private readonly signer: CallerContextSigner;

  constructor(
    private readonly publicUrl: string,
    internalSecret: string,
  ) {
    this.signer = new CallerContextSigner(Buffer.from(internalSecret, 'base64'));
  }

  member(operator: string): CallerContext {
    return { issuer: 'auth', kind: 'member', operator_id: operator, member_id: `mem_${operator}`, scopes: ['stack:services'] };
  }

  async call(method: string, path: string, body: unknown, caller: CallerContext): Promise<{ status: number; text: string; json: Record<string, unknown> }> {
    const res = await fetch(`${this.publicUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.signer.sign(caller)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, json: JSON.parse(text) as Record<string, unknown> };
  }
}

export async function expectInjectedAndScrubbed(client: ProxyClient, fx: ProxyFixture): Promise<string> {
  const op = `op_${randomBytes(4).toString('hex')}`;
  const created = await client.call('POST', '/v1/connections', { service_id: 'github', name: 'main', credential: { token: fx.token } }, client.member(op));
  expect(created.status).toBe(201);
  expect(created.text).not.toContain(fx.token);
  const id = created.json.id as string;
  const before = fx.github.requests.length;
  const res = await client.call('POST', '/v1/proxy', { service: 'github', method: 'GET', path: '/echo', headers: { Authorization: 'Bearer smuggled' } }, client.member(op));
  expect(res.status).toBe(200);
  expect(res.json.status).toBe(200);
  expect(fx.github.requests[before]?.headers.authorization).toBe(`Bearer ${fx.token}`);
  expect(res.text).not.toContain(fx.token);
  expect(res.json.body).toContain('[REDACTED]');
  // Another operator asking for this connection id: 404, never 403.
  const other = await client.call('POST', '/v1/proxy', { service: id, method: 'GET', path: '/user' }, client.member('op_someone_else'));
  expect(other.status).toBe(404);
  expect((other.json.error as { code: string }).code).toBe('NOT_FOUND');
  return id;
}

/** Connects GitHub with OAuth through the fake provider, expires the token, then fires 20 calls at once. */
export async function expectOneRefreshFor20Calls(clients: ProxyClient[], fx: ProxyFixture, publicUrl: string): Promise<void> {
  const op = `op_${randomBytes(4).toString('hex')}`;
  const c0 = clients[0]!;
  // Tokens issued now live 30 s, inside STACK's 60 s refresh margin: the stored one is due at once.
  fx.oauth.expiresIn = 30;
  const start = await c0.call('POST', '/v1/connections/oauth/start', { service_id: 'github', name: 'oauth' }, c0.member(op));
  expect(start.status).toBe(201);
  // oauth/start answers STACK's confirmation page; Continue on it (its cookie carried) binds this
  // browser and leads to the provider; the callback needs the binding cookie Continue set.
  const confirm = new URL(start.json.url as string);
  expect(confirm.origin).toBe(publicUrl);
  const pageRes = await fetch(confirm);
  const csrf = /name="csrf" value="([^"]+)"/.exec(await pageRes.text())![1]!;
  const cont = await fetch(new URL('/v1/connections/oauth/confirm', publicUrl), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: pageRes.headers.getSetCookie()[0]!.split(';')[0]! },
    body: new URLSearchParams({ state: confirm.searchParams.get('state')!, csrf }).toString(),
  });
  expect(cont.status).toBe(303);
  const binding = cont.headers.getSetCookie().find((c) => c.startsWith('stack_oauth_b_'))!.split(';')[0]!;
  const approved = await fetch(cont.headers.get('location')!, { redirect: 'manual' });
  const callback = new URL(approved.headers.get('location')!);
  expect(callback.origin).toBe(publicUrl);
  expect((await fetch(callback, { headers: { cookie: binding } })).status).toBe(200);
  const list = await c0.call('GET', '/v1/connections?service_id=github', undefined, c0.member(op));
  const conn = (list.json.items as Array<{ id: string; kind: string }>).find((c) => c.kind === 'oauth2')!;
  // The issued token stops working upstream; the refreshed one lives an hour (no second refresh).
  fx.oauth.expireAll();
  fx.oauth.expiresIn = 3600;
  fx.oauth.refreshDelayMs = 300;
  const before = fx.oauth.refreshCount;
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => clients[i % clients.length]!.call('POST', '/v1/proxy', { service: conn.id, method: 'GET', path: '/user' }, c0.member(op))));
  fx.oauth.refreshDelayMs = 0;
  expect(answers.map((a) => a.json.status)).toEqual(Array(20).fill(200));
  expect(fx.oauth.refreshCount - before).toBe(1);
}

/** Opens a `stack_connect_service` link in Chromium, pastes the token and submits the form as a human would. */
export async function expectConnectLinkInBrowser(client: ProxyClient, fx: ProxyFixture, browser: Browser): Promise<void> {
  const op = `op_${randomBytes(4).toString('hex')}`;
  const link = await client.call('POST', '/v1/connections/connect-links', { service_id: 'github', name: 'from-browser' }, client.member(op));
  expect(link.status).toBe(201);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const opened = await page.goto(link.json.url as string);
    expect(opened?.status()).toBe(200);
    await page.fill('#secret', fx.token);
    const [answer] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/v1/connections/connect'), page.click('button[type=submit]')]);
    expect(answer.status()).toBe(201);
    await page.waitForLoadState();
    expect(await page.textContent('h1')).toBe('Connected');
    expect(await page.content()).not.toContain(fx.token);
  } finally {
    await context.close();
  }
  const list = await client.call('GET', '/v1/connections?service_id=github', undefined, client.member(op));
  expect((list.json.items as Array<{ name: string }>).map((c) => c.name)).toEqual(['from-browser']);
}

export function expectNoSecretInLogs(lines: readonly string[], secrets: readonly string[]): void {
  expect(lines.length).toBeGreaterThan(10);
  const leaks = lines.filter((l) => secrets.some((s) => s && l.includes(s)));
  expect(leaks).toEqual([]);
}
