/**
 * An MCP client signing in the way Claude Code does: the MCP SDK's own client and its
 * OAuthClientProvider (discovery from the 401, Dynamic Client Registration, PKCE, a loopback
 * redirect on a random port), with a real headless Chromium doing the member's part — the
 * login form and the consent screen.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.STACK_TEST_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

export interface MemberLogin {
  email: string;
  password: string;
  /** Scopes to untick on the consent screen. */
  untick?: string[];
}

/** Fills STACK's login form and approves the consent screen (by their accessible labels). */
export async function signInAndConsent(page: Page, login: MemberLogin): Promise<void> {
  await page.getByLabel(/email/i).fill(login.email);
  await page.getByLabel(/password/i).fill(login.password);
  await page.getByRole('button', { name: /sign in|log in/i }).click();
  await page.waitForLoadState('domcontentloaded');
  for (const scope of login.untick ?? []) await page.getByLabel(new RegExp(scope.replace(':', '.'), 'i')).uncheck();
  await page.getByRole('button', { name: /allow|approve/i }).click();
}

/** Loopback callback server on a random port, as Claude Code runs one. */
async function startCallback(): Promise<{ url: string; code: Promise<string>; close(): Promise<void> }> {
  let resolveCode!: (c: string) => void;
  let rejectCode!: (e: Error) => void;
  const code = new Promise<string>((res, rej) => {
    resolveCode = res;
    rejectCode = rej;
  });
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/callback') return void res.writeHead(404).end();
    const c = url.searchParams.get('code');
    if (c) resolveCode(c);
    else rejectCode(new Error(`authorization failed: ${url.searchParams.get('error')} ${url.searchParams.get('error_description') ?? ''}`));
    res.writeHead(200, { 'content-type': 'text/plain' }).end('You can close this window.');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://localhost:${port}/callback`, code, close: () => new Promise((r) => server.close(() => r())) };
}

export class BrowserOAuthProvider implements OAuthClientProvider {
  private info?: OAuthClientInformationMixed;
  private saved?: OAuthTokens;
  private verifier = '';
  authorizationUrl?: URL;
  pendingAuthorization?: Promise<void>;

  constructor(
    private readonly redirect: string,
    private readonly browser: Browser,
    private readonly login: MemberLogin,
  ) {}

  get redirectUrl(): string {
    return this.redirect;
  }

  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'STACK e2e MCP client', redirect_uris: [this.redirect], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.info;
  }

  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.info = info;
  }

  tokens(): OAuthTokens | undefined {
    return this.saved;
  }

  saveTokens(tokens: OAuthTokens): void {
    this.saved = tokens;
  }

  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
    this.pendingAuthorization = (async () => {
      const page = await this.browser.newPage();
      try {
        await page.goto(url.toString());
        await signInAndConsent(page, this.login);
        await page.waitForURL((u) => u.href.startsWith(this.redirect), { timeout: 15_000 });
      } finally {
        await page.close();
      }
    })();
  }

  saveCodeVerifier(v: string): void {
    this.verifier = v;
  }

  codeVerifier(): string {
    return this.verifier;
  }
}

export interface ConnectedMcpClient {
  client: Client;
  provider: BrowserOAuthProvider;
  close(): Promise<void>;
}

/**
 * What `claude mcp add … && claude mcp login` amounts to: connect, get the 401, sign in through
 * the browser, exchange the code, connect again with the token.
 */
export async function connectWithBrowserSignIn(mcpUrl: string, browser: Browser, login: MemberLogin): Promise<ConnectedMcpClient> {
  const callback = await startCallback();
  const provider = new BrowserOAuthProvider(callback.url, browser, login);
  try {
    const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
    const probe = new Client({ name: 'stack-e2e', version: '1.0.0' });
    let unauthorized = false;
    try {
      await probe.connect(first);
    } catch (err) {
      unauthorized = (err as Error).name === 'UnauthorizedError' || /unauthori[sz]ed/i.test((err as Error).message);
      if (!unauthorized) throw err;
    }
    if (!unauthorized) throw new Error('the MCP endpoint let an unauthenticated client in');
    await provider.pendingAuthorization;
    await first.finishAuth(await callback.code);
    const client = new Client({ name: 'stack-e2e', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
    return { client, provider, close: () => client.close() };
  } finally {
    await callback.close();
  }
}
