/**
 * Sign-in on the distributed topology (six processes behind the reverse proxy): the MCP-client
 * flow with an independent OAuth library and a real browser, then each attack the authorization
 * server must refuse, each its own test, and the REST API's boundaries.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, type BusConnection } from '@stack/bus';
import { ClientApprovedEvent, DEFAULT_SCOPES, PASSPORT_COMMANDS, ResolveApiKeyCommand, RevocationRecordedEvent, StackError, type PayloadOf } from '@stack/contracts';
import { startClientMetadataServer, startDistributedStack, type ClientMetadataServer, type DistributedStack } from '@stack/testing';
import type { AuthorizationServer, Client } from 'oauth4webapi';
import { Client as PgClient } from 'pg';
import type { Browser } from 'playwright-core';

import { createOwnerWithCli, getJson, sendJson } from './support/auth-admin';
import { eventually } from './support/wait';
import { expectOAuthFlow } from './support/auth-checks';
import {
  authorizationUrl,
  discover,
  exchangeCode,
  launchBrowser,
  obtainCode,
  oauthErrorOf,
  rawTokenRequest,
  refresh as refreshWith,
  register,
  signIn,
  startCallbackServer,
  validateAccessToken,
  type CallbackServer,
  type Member,
} from './support/auth-client';

const owner: Member = { email: 'owner@alpha.example', password: 'alpha-owner-password-1' };
const other: Member = { email: 'owner@beta.example', password: 'beta-owner-password-1' };

describe('auth, distributed: OAuth 2.1 for MCP clients', () => {
  let stack: DistributedStack;
  let browser: Browser;
  let as: AuthorizationServer;
  let client: Client;
  let callback: CallbackServer;
  let bus: BusConnection;
  let cimd: ClientMetadataServer;

  beforeAll(async () => {
    // Client metadata documents come from a loopback HTTPS fake: auth trusts its certificate and may reach 127.0.0.1.
    cimd = await startClientMetadataServer();
    stack = await startDistributedStack({
      serviceEnv: {
        auth: { STACK_BOOTSTRAP_OWNER_EMAIL: owner.email, STACK_BOOTSTRAP_OWNER_PASSWORD: owner.password, NODE_EXTRA_CA_CERTS: cimd.certFile, STACK_PROXY_PRIVATE_ALLOWLIST: '127.0.0.1/32' },
      },
    });
    await createOwnerWithCli({ DATABASE_URL: stack.database.url, STACK_DATA_DIR: `/tmp/${stack.busPrefix}-cli`, STACK_PUBLIC_URL: stack.publicUrl, STACK_MASTER_KEYS: stack.masterKeys, STACK_INTERNAL_SECRET: stack.internalSecret }, { ...other, operatorName: 'Beta' });
    browser = await launchBrowser();
    as = await discover(stack.publicUrl);
    callback = await startCallbackServer();
    client = await register(as, callback.redirectUri, 'Attack-test client');
    bus = await connectNatsBus({ servers: stack.natsUrl, prefix: stack.busPrefix, internalSecret: Buffer.from(stack.internalSecret, 'base64'), timeoutMs: 5000, instanceId: 'e2e-auth' });
  });

  afterAll(async () => {
    await bus?.close();
    await callback?.stop();
    await browser?.close();
    await stack?.stop();
    await cimd?.stop();
  });

  it('signs an MCP client in: discovery, registration, login and consent in Chromium, PKCE exchange, JWT for the MCP audience, refresh with rotation, revocation', async () => {
    const result = await expectOAuthFlow(stack.publicUrl, browser, owner);
    expect(result.memberId).toMatch(/^mem_/);
  });

  it('signs in a client named by its metadata document URL (CIMD), ignoring the port of its loopback redirect', async () => {
    expect((as as unknown as Record<string, unknown>).client_id_metadata_document_supported).toBe(true);
    // Like Claude Code's document: a portless loopback redirect, then a random port in use.
    const clientId = cimd.publish('/oauth/client.json', (id) => ({
      client_id: id,
      client_name: 'Document client',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }));
    const docClient: Client = { client_id: clientId, token_endpoint_auth_method: 'none' };
    const { start, callbackUrl } = await obtainCode(browser, as, docClient, callback, owner);
    const tokens = await exchangeCode(as, docClient, start, callbackUrl, callback.redirectUri);
    const claims = await validateAccessToken(as, tokens.access_token, `${stack.publicUrl}/mcp`);
    expect(claims.client_id).toBe(clientId);
    // Fetched once, then served from the cache.
    expect(cimd.fetches('/oauth/client.json')).toBe(1);
  });

  it('refuses a metadata document URL on a private address (SSRF) and a document listing a non-loopback http redirect', async () => {
    const privateDoc = await authorizationUrl(as, { client_id: 'https://10.20.30.40/client.json' }, callback.redirectUri, { scope: 'stack:services' });
    const res = await fetch(privateDoc.url, { redirect: 'manual' });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/invalid_client/);

    const badId = cimd.publish('/oauth/bad.json', (id) => ({ client_id: id, client_name: 'Bad', redirect_uris: ['http://attacker.example/callback'], token_endpoint_auth_method: 'none' }));
    const bad = await authorizationUrl(as, { client_id: badId }, 'http://attacker.example/callback', { scope: 'stack:services' });
    const refused = await fetch(bad.url, { redirect: 'manual' });
    expect(refused.status).toBe(400);
    expect(refused.headers.get('location')).toBeNull();
  });

  it('grants the default scopes to a client that sends no scope', async () => {
    const { start, callbackUrl } = await obtainCode(browser, as, client, callback, owner, { scope: undefined });
    expect(start.url.searchParams.has('scope')).toBe(false);
    const tokens = await exchangeCode(as, client, start, callbackUrl, callback.redirectUri);
    const claims = await validateAccessToken(as, tokens.access_token, `${stack.publicUrl}/mcp`);
    expect(String(claims.scope).split(' ').sort()).toEqual([...DEFAULT_SCOPES].sort());
    expect(tokens.refresh_token).toEqual(expect.any(String));
  });

  it('refuses a code used twice', async () => {
    const { start, callbackUrl } = await obtainCode(browser, as, client, callback, owner);
    await exchangeCode(as, client, start, callbackUrl, callback.redirectUri);
    expect(await oauthErrorOf(exchangeCode(as, client, start, callbackUrl, callback.redirectUri))).toBe('invalid_grant');
  });

  it('refuses a wrong PKCE verifier', async () => {
    const { code } = await obtainCode(browser, as, client, callback, owner);
    const res = await rawTokenRequest(as, { grant_type: 'authorization_code', code, client_id: client.client_id, redirect_uri: callback.redirectUri, code_verifier: randomBytes(32).toString('base64url') });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_grant');
    expect(res.body.access_token).toBeUndefined();
  });

  it('refuses a missing PKCE verifier at the token endpoint', async () => {
    const { code } = await obtainCode(browser, as, client, callback, owner);
    const res = await rawTokenRequest(as, { grant_type: 'authorization_code', code, client_id: client.client_id, redirect_uri: callback.redirectUri });
    expect(res.status).toBe(400);
    expect(['invalid_grant', 'invalid_request']).toContain(res.body.error);
    expect(res.body.access_token).toBeUndefined();
  });

  it('refuses an authorization request without PKCE', async () => {
    const start = await authorizationUrl(as, client, callback.redirectUri, { scope: 'stack:services' });
    start.url.searchParams.delete('code_challenge');
    start.url.searchParams.delete('code_challenge_method');
    const res = await fetch(start.url, { redirect: 'manual' });
    const location = new URL(res.headers.get('location') ?? '', stack.publicUrl);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it('refuses plain PKCE', async () => {
    const start = await authorizationUrl(as, client, callback.redirectUri, { scope: 'stack:services' });
    start.url.searchParams.set('code_challenge', start.verifier);
    start.url.searchParams.set('code_challenge_method', 'plain');
    const res = await fetch(start.url, { redirect: 'manual' });
    const location = new URL(res.headers.get('location') ?? '', stack.publicUrl);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/code_challenge_method/);
  });

  it('refuses a redirect URI that was not registered, without redirecting to it', async () => {
    const start = await authorizationUrl(as, client, 'https://attacker.example/callback', { scope: 'stack:services' });
    const res = await fetch(start.url, { redirect: 'manual' });
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
    expect(await res.text()).toMatch(/redirect_uri/);
  });

  it('refuses to register a non-loopback http redirect URI', async () => {
    const res = await fetch(as.registration_endpoint!, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://attacker.example/callback'], token_endpoint_auth_method: 'none' }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_redirect_uri');
  });

  it('registers public clients only: no secret, and a client asking for one is refused', async () => {
    const register = (body: unknown) => fetch(as.registration_endpoint!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const plain = await register({ redirect_uris: ['http://localhost/callback'] });
    expect(plain.status).toBe(201);
    const meta = (await plain.json()) as Record<string, unknown>;
    expect(meta.token_endpoint_auth_method).toBe('none');
    expect(meta.application_type).toBe('native');
    expect(meta.client_secret).toBeUndefined();
    const secret = await register({ redirect_uris: ['http://localhost/callback'], token_endpoint_auth_method: 'client_secret_basic' });
    expect(secret.status).toBe(400);
    expect(((await secret.json()) as { error: string }).error).toBe('invalid_client_metadata');
  });

  it('accepts a loopback redirect on any port for a native (MCP) client', async () => {
    const start = await authorizationUrl(as, client, callback.redirectUri.replace(`:${callback.port}`, ':1'), { scope: 'stack:services' });
    const res = await fetch(start.url, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(/\/login\?uid=/);
  });

  it('refuses a token presented to the wrong audience', async () => {
    // A token for the MCP resource, presented to the REST API.
    const { start, callbackUrl } = await obtainCode(browser, as, client, callback, owner);
    const tokens = await exchangeCode(as, client, start, callbackUrl, callback.redirectUri);
    const res = await getJson(`${stack.publicUrl}/v1/team/members`, tokens.access_token);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { code: 'UNAUTHORIZED', message: 'access token was issued for another resource' } });
  });

  it('refuses an expired code', async () => {
    const { start, callbackUrl, code } = await obtainCode(browser, as, client, callback, owner);
    // Age the code in the database instead of sleeping through its 60 s lifetime.
    const db = new PgClient({ connectionString: stack.database.url });
    await db.connect();
    try {
      const result = await db.query(`UPDATE auth.oidc_payloads SET expires_at = now() - interval '1 second', payload = jsonb_set(payload, '{exp}', to_jsonb(extract(epoch from now())::int - 1)) WHERE model = 'AuthorizationCode'`);
      expect(result.rowCount).toBeGreaterThanOrEqual(1);
    } finally {
      await db.end();
    }
    expect(code).toEqual(expect.any(String));
    expect(await oauthErrorOf(exchangeCode(as, client, start, callbackUrl, callback.redirectUri))).toBe('invalid_grant');
  });

  it('refuses a consent form posted without its CSRF token', async () => {
    const start = await authorizationUrl(as, client, callback.redirectUri, { scope: 'stack:services' });
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await signIn(page, start.url, owner);
      const consentUrl = page.url();
      const res = await page.request.post(consentUrl, { form: { scope: 'stack:services', decision: 'approve' }, maxRedirects: 0 });
      expect(res.status()).toBe(403);
      expect(await res.text()).toMatch(/CSRF/);
      // With the token the same form goes through.
      const arrived = callback.next();
      await page.getByRole('button', { name: 'Allow' }).click();
      expect((await arrived).searchParams.get('code')).toEqual(expect.any(String));
    } finally {
      await context.close();
    }
  });

  it('throttles login brute force per account', async () => {
    const email = `victim-${randomBytes(4).toString('hex')}@alpha.example`;
    const form = await fetch(`${stack.publicUrl}/login`);
    const cookie = (form.headers.get('set-cookie') ?? '').split(';')[0]!;
    const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())![1]!;
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 7; i += 1) {
      const res = await fetch(`${stack.publicUrl}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: new URLSearchParams({ csrf, email, password: `guess-${i}-wrong-password` }),
        redirect: 'manual',
      });
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get('retry-after');
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    expect(Number(retryAfter)).toBeGreaterThan(0);
  });

  it('keeps sign-up closed by default (invite-only)', async () => {
    const res = await fetch(`${stack.publicUrl}/login/signup`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('Ask an admin of your team for an invitation');
  });

  it('answers 404 when a member of one operator reads another operator’s team', async () => {
    // The alpha owner gets a token for the REST API and learns their own member id.
    const alpha = await apiToken(owner);
    const mine = await getJson(`${stack.publicUrl}/v1/team/members`, alpha);
    expect(mine.status).toBe(200);
    const alphaMembers = mine.body.members as { id: string; email: string; role: string }[];
    expect(alphaMembers.map((m) => m.email)).toEqual([owner.email]);
    // The beta owner, in another operator, cannot see it.
    const beta = await apiToken(other);
    const res = await getJson(`${stack.publicUrl}/v1/team/members/${alphaMembers[0]!.id}`, beta);
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: 'NOT_FOUND', message: 'no such member' } });
    const theirs = await getJson(`${stack.publicUrl}/v1/team/members`, beta);
    expect((theirs.body.members as { email: string }[]).map((m) => m.email)).toEqual([other.email]);
  });

  it('revokes a member: their API keys and OAuth tokens are refused at once', async () => {
    const admin = await apiToken(owner);
    const invite = await sendJson('POST', `${stack.publicUrl}/v1/team/members/invite`, admin, { email: 'dev@alpha.example', name: 'Dev', role: 'standard' });
    expect(invite.status).toBe(201);
    const acceptUrl = String(invite.body.accept_url);
    expect(acceptUrl.startsWith(`${stack.publicUrl}/login/accept?token=`)).toBe(true);
    const dev: Member = { email: 'dev@alpha.example', password: 'dev-member-password-1' };
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(acceptUrl);
      await page.getByLabel(/New password/).fill(dev.password);
      await page.getByRole('button', { name: 'Save password' }).click();
      await page.getByText('You joined as dev@alpha.example').waitFor();
    } finally {
      await context.close();
    }
    const devToken = await apiToken(dev, 'stack:services');
    const created = await sendJson('POST', `${stack.publicUrl}/v1/api-keys`, devToken, { name: 'laptop' });
    expect(created.status).toBe(201);
    // No more than the token that made it (and never stack:admin for a standard member).
    expect(created.body.scopes).toEqual(['stack:services']);
    const apiKey = String(created.body.key);
    expect(apiKey).toMatch(/^sk_live_/);
    expect((await getJson(`${stack.publicUrl}/v1/api-keys`, apiKey)).status).toBe(200);
    // The gateway's way: auth resolves the key over the bus.
    const resolved = await bus.forService('mcp-gateway').request(ResolveApiKeyCommand, { api_key: apiKey });
    expect(resolved).toMatchObject({ role: 'standard', member_id: expect.stringMatching(/^mem_/), operator_id: expect.stringMatching(/^op_/), scopes: ['stack:services'] });

    const devId = ((await getJson(`${stack.publicUrl}/v1/team/members`, admin)).body.members as { id: string; email: string }[]).find((m) => m.email === dev.email)!.id;
    const revoked = await sendJson('DELETE', `${stack.publicUrl}/v1/team/members/${devId}`, admin);
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    expect((await getJson(`${stack.publicUrl}/v1/api-keys`, apiKey)).body).toEqual({ error: { code: 'UNAUTHORIZED', message: 'API key is unknown or revoked' } });
    expect((await getJson(`${stack.publicUrl}/v1/team/members`, devToken)).body).toEqual({ error: { code: 'UNAUTHORIZED', message: 'access token was revoked' } });
    // Revocations reach the REVOCATIONS stream (member, and each of their grants); the approval reached EVENTS.
    const revocations: PayloadOf<typeof RevocationRecordedEvent>[] = [];
    const approvals: PayloadOf<typeof ClientApprovedEvent>[] = [];
    const handles = [
      await bus.forService('audit').consume({ durable: `e2e-rev-${randomBytes(4).toString('hex')}`, events: [RevocationRecordedEvent] }, async (_e, p) => {
        revocations.push(p as PayloadOf<typeof RevocationRecordedEvent>);
      }),
      await bus.forService('audit').consume({ durable: `e2e-app-${randomBytes(4).toString('hex')}`, events: [ClientApprovedEvent] }, async (_e, p) => {
        approvals.push(p as PayloadOf<typeof ClientApprovedEvent>);
      }),
    ];
    try {
      await eventually(() => (revocations.some((r) => r.kind === 'member' && r.value === devId) && revocations.some((r) => r.kind === 'grant' && r.reason === 'member revoked') ? true : undefined), 15_000, 'member and grant revocations on the stream');
      await eventually(() => (approvals.some((a) => a.member_id === devId && a.client_id === client.client_id) ? true : undefined), 15_000, 'the approval of the client by the member');
    } finally {
      await Promise.all(handles.map((h) => h.stop()));
    }
    const refused = await bus.forService('mcp-gateway').request(ResolveApiKeyCommand, { api_key: apiKey }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StackError);
    expect((refused as StackError).code).toBe('UNAUTHORIZED');
  });

  it('revokes one API key: the other nodes refuse it at once (not after their 30 s cache), and the revocation stays in snapshots', async () => {
    const admin = await apiToken(owner, 'stack:services stack:passports stack:admin');
    const created = await sendJson('POST', `${stack.publicUrl}/v1/api-keys`, admin, { name: 'revoke-me' });
    expect(created.status).toBe(201);
    const apiKey = String(created.body.key);
    const keyId = String(created.body.id);
    const kept = String((await sendJson('POST', `${stack.publicUrl}/v1/api-keys`, admin, { name: 'keep-me' })).body.key);
    // Two other processes resolve the key over the bus and cache auth's answer.
    const elsewhere = [`${stack.publicUrl}/v1/services`, `${stack.publicUrl}/v1/agents`];
    for (const url of elsewhere) {
      expect((await getJson(url, apiKey)).status).toBe(200);
      expect((await getJson(url, kept)).status).toBe(200);
    }
    const revokedAt = Date.now();
    expect((await sendJson('DELETE', `${stack.publicUrl}/v1/api-keys/${keyId}`, admin)).status).toBe(204);
    for (const url of elsewhere) {
      const refused = await eventually(async () => {
        const res = await getJson(url, apiKey);
        return res.status === 401 ? res : undefined;
      }, 5000, `${url} refusing the revoked key`);
      expect(refused.body).toEqual({ error: { code: 'UNAUTHORIZED', message: 'API key is unknown or revoked' } });
    }
    // Well inside the cache's lifetime: the revocation event, not the cache's expiry, did it.
    expect(Date.now() - revokedAt).toBeLessThan(20_000);
    for (const url of elsewhere) expect((await getJson(url, kept)).status).toBe(200);
    // A node starting now gets it in its snapshot: from a live peer, and from the passport service's own table.
    const snap = await bus.forService('mcp-gateway').request(PASSPORT_COMMANDS.revocationSnapshot, {});
    const entry = snap.entries.find((e) => e.kind === 'api_key' && e.value === keyId);
    expect(entry).toMatchObject({ operator_id: expect.stringMatching(/^op_/) });
    expect(entry!.expires_at_ms - entry!.revoked_at_ms).toBeGreaterThan(30_000);
    const db = new PgClient({ connectionString: stack.database.url });
    await db.connect();
    try {
      await eventually(async () => ((await db.query(`SELECT 1 FROM passport.revocations WHERE kind = 'api_key' AND value = $1`, [keyId])).rowCount ? true : undefined), 5000, 'the passport service storing the revocation');
    } finally {
      await db.end();
    }
  });

  it('lists connected apps, and disconnecting one revokes its grant: its tokens stop working at once', async () => {
    const appCallback = await startCallbackServer();
    try {
      const app = await register(as, appCallback.redirectUri, 'Disconnect me');
      const { start, callbackUrl } = await obtainCode(browser, as, app, appCallback, owner, { scope: 'stack:services offline_access', resource: `${stack.publicUrl}/v1` });
      const tokens = await exchangeCode(as, app, start, callbackUrl, appCallback.redirectUri);
      const listed = await getJson(`${stack.publicUrl}/v1/team/connected-apps`, tokens.access_token);
      expect(listed.status).toBe(200);
      const mine = (listed.body.connected_apps as { client_id: string; client_name: string; redirect_host: string; scopes: string[] }[]).find((a) => a.client_id === app.client_id);
      expect(mine).toMatchObject({ client_name: 'Disconnect me', redirect_host: `127.0.0.1:${appCallback.port}`, scopes: ['stack:services', 'offline_access'] });
      const removed = await sendJson('DELETE', `${stack.publicUrl}/v1/team/connected-apps/${encodeURIComponent(app.client_id)}`, tokens.access_token);
      expect(removed.status).toBe(204);
      expect((await getJson(`${stack.publicUrl}/v1/team/members`, tokens.access_token)).body).toEqual({ error: { code: 'UNAUTHORIZED', message: 'access token was revoked' } });
      expect(await oauthErrorOf(refreshTokens(app, tokens.refresh_token!))).toBe('invalid_grant');
    } finally {
      await appCallback.stop();
    }
  });

  /** An access token for the REST API (`resource` = `${public}/v1`) through the browser flow. */
  function refreshTokens(app: Client, token: string) {
    return refreshWith(as, app, token);
  }

  async function apiToken(member: Member, scope = 'stack:services stack:admin'): Promise<string> {
    const { start, callbackUrl } = await obtainCode(browser, as, client, callback, member, { scope, resource: `${stack.publicUrl}/v1` });
    const tokens = await exchangeCode(as, client, start, callbackUrl, callback.redirectUri);
    return tokens.access_token;
  }
});
