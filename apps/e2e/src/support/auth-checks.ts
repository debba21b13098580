/**
 * The sign-in flow an MCP client goes through, as checks shared by both shapes: discovery of
 * both metadata documents, dynamic registration, login and consent in Chromium, code exchange
 * with PKCE, the JWT validated against the JWKS for the right audience, refresh with rotation
 * (and the grace for a resent token), revocation.
 */
import { STACK_SCOPES } from '@stack/contracts';
import type { Browser } from 'playwright-core';

import * as oauth from 'oauth4webapi';

import { INSECURE, approveInBrowser, authorizationUrl, discover, exchangeCode, oauthErrorOf, refresh, register, revoke, signIn, startCallbackServer, validateAccessToken, type Member } from './auth-client';

export interface OAuthFlowResult {
  memberId: string;
  operatorId: string;
  clientId: string;
}

export async function expectMetadata(publicUrl: string): Promise<void> {
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
    const res = await fetch(`${publicUrl}${path}`);
    expect(res.status).toBe(200);
    const meta = (await res.json()) as Record<string, unknown>;
    expect(meta.issuer).toBe(publicUrl);
    expect(meta.code_challenge_methods_supported).toEqual(['S256']);
    expect(meta.token_endpoint_auth_methods_supported).toContain('none');
    expect(meta.authorization_response_iss_parameter_supported).toBe(true);
    expect(meta.registration_endpoint).toBe(`${publicUrl}/oauth/register`);
    expect(meta.jwks_uri).toBe(`${publicUrl}/oauth/jwks`);
    expect(meta.scopes_supported).toEqual(expect.arrayContaining([...STACK_SCOPES, 'offline_access']));
  }
}

export async function expectOAuthFlow(publicUrl: string, browser: Browser, member: Member): Promise<OAuthFlowResult> {
  await expectMetadata(publicUrl);
  const as = await discover(publicUrl);
  const callback = await startCallbackServer();
  try {
    const client = await register(as, callback.redirectUri);
    expect(client.token_endpoint_auth_method).toBe('none');

    // No `resource`: the token is for the MCP resource. The member unticks stack:admin.
    const start = await authorizationUrl(as, client, callback.redirectUri, { scope: 'stack:services stack:audit stack:admin offline_access' });
    const callbackUrl = await approveInBrowser(browser, start, member, callback, ['stack:admin']);
    expect(callbackUrl.searchParams.get('state')).toBe(start.state);
    expect(callbackUrl.searchParams.get('iss')).toBe(publicUrl);
    const tokens = await exchangeCode(as, client, start, callbackUrl, callback.redirectUri);
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.refresh_token).toEqual(expect.any(String));

    const claims = await validateAccessToken(as, tokens.access_token, `${publicUrl}/mcp`);
    expect(claims.client_id).toBe(client.client_id);
    expect(claims.iss).toBe(publicUrl);
    const scopes = String(claims.scope).split(' ');
    expect(scopes).toEqual(expect.arrayContaining(['stack:services', 'stack:audit']));
    expect(scopes).not.toContain('stack:admin');
    const stk = claims.stk as { operator_id: string; member_id: string; grant_id: string };
    expect(stk.member_id).toBe(claims.sub);
    expect(stk.operator_id).toMatch(/^op_/);
    expect(stk.grant_id).toEqual(expect.any(String));
    // The same token is not valid for the REST API.
    await expect(validateAccessToken(as, tokens.access_token, `${publicUrl}/v1`)).rejects.toThrow();

    // Refresh rotates the refresh token; resending the just-rotated one (inside the grace) does not kill the grant.
    const refreshed = await refresh(as, client, tokens.refresh_token!);
    expect(refreshed.refresh_token).toEqual(expect.any(String));
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    await validateAccessToken(as, refreshed.access_token, `${publicUrl}/mcp`);
    const resent = await refresh(as, client, tokens.refresh_token!);
    expect(resent.access_token).toEqual(expect.any(String));
    const again = await refresh(as, client, refreshed.refresh_token!);

    // Consent remembers the member's decision for this client: asked again, stack:admin stays unticked.
    const second = await authorizationUrl(as, client, callback.redirectUri, { scope: 'stack:services stack:audit stack:admin offline_access' });
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await signIn(page, second.url, member);
      expect(await page.locator('input[name=scope][value="stack:admin"]').isChecked()).toBe(false);
      expect(await page.locator('input[name=scope][value="stack:services"]').isChecked()).toBe(true);
      expect(await page.getByText(`returning to 127.0.0.1:${callback.port}`).count()).toBe(1);
      const denied = callback.next();
      await page.getByRole('button', { name: 'Deny' }).click();
      expect((await denied).searchParams.get('error')).toBe('access_denied');
    } finally {
      await context.close();
    }

    // Introspection (RFC 7662) of the live refresh token, then revocation (RFC 7009) of it, which
    // revokes the grant: nothing of it refreshes or introspects as active any more.
    const introspect = async (token: string) => oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, oauth.None(), token, INSECURE));
    const live = await introspect(again.refresh_token!);
    expect(live).toMatchObject({ active: true, client_id: client.client_id, sub: stk.member_id });
    await revoke(as, client, again.refresh_token!);
    expect((await introspect(again.refresh_token!)).active).toBe(false);
    expect(await oauthErrorOf(refresh(as, client, again.refresh_token!))).toBe('invalid_grant');
    expect(await oauthErrorOf(refresh(as, client, resent.refresh_token!))).toBe('invalid_grant');
    return { memberId: stk.member_id, operatorId: stk.operator_id, clientId: client.client_id };
  } finally {
    await callback.stop();
  }
}
