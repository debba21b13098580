/**
 * A fake upstream OAuth 2 authorization server, for STACK acting as the client: the authorize
 * endpoint approves at once (redirecting with a code), the token endpoint checks the client and
 * PKCE (S256) and issues access tokens with a short, configurable life and rotating refresh
 * tokens. It counts refreshes, can be slowed (so concurrent callers really overlap) and can be
 * told to refuse refreshes (to drive `needs_reauth`). Mounted on a fake API's origin, the way
 * GitHub serves /login/oauth/* beside its API.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface FakeOAuthOptions {
  clientId: string;
  clientSecret: string;
  /** Lifetime of issued access tokens, seconds (default 3600). */
  expiresIn?: number;
  authorizePath?: string;
  tokenPath?: string;
}

interface Grant {
  clientId: string;
  redirectUri: string;
  challenge: string;
}

export class FakeOAuthProvider {
  readonly authorizePath: string;
  readonly tokenPath: string;
  expiresIn: number;
  refreshDelayMs = 0;
  failRefresh = false;
  /** The token endpoint answers this status (a provider outage or rate limit) while set, refreshing nothing. */
  outageStatus: number | undefined;
  refreshCount = 0;
  private readonly codes = new Map<string, Grant>();
  private readonly access = new Map<string, number>();
  private readonly refresh = new Set<string>();

  constructor(private readonly o: FakeOAuthOptions) {
    this.authorizePath = o.authorizePath ?? '/login/oauth/authorize';
    this.tokenPath = o.tokenPath ?? '/login/oauth/access_token';
    this.expiresIn = o.expiresIn ?? 3600;
  }

  /** True when the access token was issued here and has not expired. */
  isValid(token: string): boolean {
    const exp = this.access.get(token);
    return exp !== undefined && exp > Date.now();
  }

  /** Every access and refresh token issued so far (the tests scan logs for them). */
  issuedSecrets(): string[] {
    return [...this.access.keys(), ...this.refresh];
  }

  /** Makes every issued access token expire now (the refresh path is then due). */
  expireAll(): void {
    for (const k of this.access.keys()) this.access.set(k, 0);
  }

  private issue(): Record<string, unknown> {
    const access_token = `gho_fake_${randomBytes(18).toString('hex')}`;
    const refresh_token = `ghr_fake_${randomBytes(18).toString('hex')}`;
    this.access.set(access_token, Date.now() + this.expiresIn * 1000);
    this.refresh.add(refresh_token);
    return { access_token, refresh_token, token_type: 'bearer', expires_in: this.expiresIn };
  }

  /** Handles the OAuth routes; false when the request is not one of them. */
  async handle(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (req.method === 'GET' && url.pathname === this.authorizePath) {
      const p = url.searchParams;
      if (p.get('client_id') !== this.o.clientId || p.get('code_challenge_method') !== 'S256' || !p.get('code_challenge') || !p.get('redirect_uri')) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('bad authorization request');
        return true;
      }
      const code = randomBytes(12).toString('hex');
      this.codes.set(code, { clientId: p.get('client_id')!, redirectUri: p.get('redirect_uri')!, challenge: p.get('code_challenge')! });
      const back = new URL(p.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', p.get('state') ?? '');
      res.writeHead(302, { location: back.toString() }).end();
      return true;
    }
    if (req.method === 'POST' && url.pathname === this.tokenPath) {
      const f = new URLSearchParams(body.toString('utf8'));
      const json = (status: number, value: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      if (f.get('client_id') !== this.o.clientId || f.get('client_secret') !== this.o.clientSecret) {
        json(401, { error: 'invalid_client' });
        return true;
      }
      if (f.get('grant_type') === 'authorization_code') {
        const grant = this.codes.get(f.get('code') ?? '');
        this.codes.delete(f.get('code') ?? '');
        const verifier = f.get('code_verifier') ?? '';
        if (!grant || grant.redirectUri !== f.get('redirect_uri') || createHash('sha256').update(verifier).digest('base64url') !== grant.challenge) {
          json(400, { error: 'invalid_grant' });
          return true;
        }
        json(200, this.issue());
        return true;
      }
      if (f.get('grant_type') === 'refresh_token') {
        this.refreshCount++;
        if (this.refreshDelayMs) await new Promise((r) => setTimeout(r, this.refreshDelayMs));
        if (this.outageStatus) {
          json(this.outageStatus, { message: 'the service is unavailable' });
          return true;
        }
        const rt = f.get('refresh_token') ?? '';
        if (this.failRefresh || !this.refresh.has(rt)) {
          json(400, { error: 'invalid_grant' });
          return true;
        }
        this.refresh.delete(rt); // rotation: a refresh token works once
        json(200, this.issue());
        return true;
      }
      json(400, { error: 'unsupported_grant_type' });
      return true;
    }
    return false;
  }
}
