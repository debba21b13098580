/**
 * An MCP-style OAuth client for the end-to-end tests, built on an independent library
 * (oauth4webapi, not STACK's code): discovery, dynamic registration, PKCE, code exchange,
 * refresh, revocation, JWT access-token validation. The human part (login and consent) runs in a
 * real headless Chromium through playwright-core.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import * as oauth from 'oauth4webapi';
import { chromium, type Browser, type Page } from 'playwright-core';

export const INSECURE = { [oauth.allowInsecureRequests]: true } as const;

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** The loopback redirect target an MCP client listens on; records every callback URL it gets. */
export interface CallbackServer {
  port: number;
  redirectUri: string;
  next(timeoutMs?: number): Promise<URL>;
  stop(): Promise<void>;
}

export async function startCallbackServer(): Promise<CallbackServer> {
  const waiting: ((u: URL) => void)[] = [];
  const received: URL[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    res.writeHead(url.pathname === '/callback' ? 200 : 404, { 'Content-Type': 'text/plain' }).end('You can close this window.');
    // Only the redirect counts (a browser also asks for /favicon.ico).
    if (url.pathname !== '/callback') return;
    const w = waiting.shift();
    if (w) w(url);
    else received.push(url);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    redirectUri: `http://127.0.0.1:${port}/callback`,
    next: (timeoutMs = 20_000) => {
      const ready = received.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise<URL>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no OAuth callback arrived')), timeoutMs);
        waiting.push((u) => {
          clearTimeout(timer);
          resolve(u);
        });
      });
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function discover(publicUrl: string): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(publicUrl);
  const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...INSECURE });
  return oauth.processDiscoveryResponse(issuer, res);
}

export async function register(as: oauth.AuthorizationServer, redirectUri: string, name = 'E2E MCP client'): Promise<oauth.Client> {
  const res = await oauth.dynamicClientRegistrationRequest(
    as,
    { redirect_uris: [redirectUri], client_name: name, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' },
    INSECURE,
  );
  return oauth.processDynamicClientRegistrationResponse(res);
}

export interface AuthorizationStart {
  url: URL;
  state: string;
  verifier: string;
}

export async function authorizationUrl(as: oauth.AuthorizationServer, client: oauth.Client, redirectUri: string, options: { scope?: string; resource?: string } = {}): Promise<AuthorizationStart> {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint!);
  url.searchParams.set('client_id', client.client_id);
  url.searchParams.set('redirect_uri', redirectUri);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  url.searchParams.set('code_challenge_method', 'S256');
  url.searchParams.set('state', state);
  url.searchParams.set('prompt', 'consent');
  if (options.scope !== undefined) url.searchParams.set('scope', options.scope);
  if (options.resource) url.searchParams.set('resource', options.resource);
  return { url, state, verifier };
}

export interface Member {
  email: string;
  password: string;
}

/** Logs in on /login and stops on the consent page. */
export async function signIn(page: Page, url: URL, member: Member): Promise<void> {
  await page.goto(url.href);
  await page.waitForURL(/\/login\?uid=/);
  await page.getByLabel('Email').fill(member.email);
  await page.getByLabel('Password').fill(member.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/consent\?uid=/);
}

/** The whole human part: log in, optionally untick scopes, approve; returns the callback URL. */
export async function approveInBrowser(browser: Browser, start: AuthorizationStart, member: Member, callback: CallbackServer, untick: string[] = []): Promise<URL> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await signIn(page, start.url, member);
    for (const scope of untick) await page.locator(`input[name=scope][value="${scope}"]`).uncheck();
    const arrived = callback.next();
    await page.getByRole('button', { name: 'Allow' }).click();
    return await arrived;
  } finally {
    await context.close();
  }
}

export async function exchangeCode(as: oauth.AuthorizationServer, client: oauth.Client, start: AuthorizationStart, callbackUrl: URL, redirectUri: string): Promise<oauth.TokenEndpointResponse> {
  const params = oauth.validateAuthResponse(as, client, callbackUrl, start.state);
  const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri, start.verifier, INSECURE);
  return oauth.processAuthorizationCodeResponse(as, client, res);
}

export async function refresh(as: oauth.AuthorizationServer, client: oauth.Client, refreshToken: string): Promise<oauth.TokenEndpointResponse> {
  const res = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, INSECURE);
  return oauth.processRefreshTokenResponse(as, client, res);
}

export async function revoke(as: oauth.AuthorizationServer, client: oauth.Client, token: string): Promise<void> {
  const res = await oauth.revocationRequest(as, client, oauth.None(), token, INSECURE);
  await oauth.processRevocationResponse(res);
}

/** RFC 9068 validation by the library: signature from the JWKS, typ at+jwt, iss, aud, exp. */
export async function validateAccessToken(as: oauth.AuthorizationServer, accessToken: string, audience: string): Promise<oauth.JWTAccessTokenClaims> {
  const request = new Request(audience, { headers: { authorization: `Bearer ${accessToken}` } });
  return oauth.validateJwtAccessToken(as, request, audience, INSECURE);
}

/** The OAuth error code of a rejected token request (oauth4webapi throws ResponseBodyError). */
export async function oauthErrorOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof oauth.ResponseBodyError) return err.error;
    throw err;
  }
  throw new Error('expected the OAuth request to fail');
}

/** Posts a raw form to the token endpoint (for requests the library refuses to make, like a missing verifier). */
export async function rawTokenRequest(as: oauth.AuthorizationServer, form: Record<string, string>): Promise<{ status: number; body: { error?: string; access_token?: string } }> {
  const res = await fetch(as.token_endpoint!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form) });
  return { status: res.status, body: (await res.json()) as { error?: string; access_token?: string } };
}

/** A code obtained through the browser, not yet exchanged. */
export async function obtainCode(browser: Browser, as: oauth.AuthorizationServer, client: oauth.Client, callback: CallbackServer, member: Member, options: { scope?: string; resource?: string } = {}) {
  const start = await authorizationUrl(as, client, callback.redirectUri, { scope: 'stack:services offline_access', ...options });
  const callbackUrl = await approveInBrowser(browser, start, member, callback);
  const code = callbackUrl.searchParams.get('code');
  if (!code) throw new Error(`no code in callback ${callbackUrl.search}`);
  return { start, callbackUrl, code };
}
