/**
 * The MCP gateway on the distributed topology with TWO gateway replicas behind the reverse
 * proxy: the MCP SDK's own client signs in as Claude Code does (401 → protected-resource
 * metadata → authorization-server metadata → registration → login and consent in Chromium →
 * code exchange), then lists and calls tools, its requests landing on both replicas.
 */
import type { Browser } from 'playwright-core';

import { startDistributedStack, type DistributedStack } from '@stack/testing';

import { expectRefusals, expectSignInAndToolCalls, expectWholeLogVerify } from './support/mcp-checks';
import { launchChromium, type ConnectedMcpClient } from './support/mcp-oauth-client';

const owner = { email: 'owner@mcp.example', password: 'owner-password-for-mcp-1' };

describe('MCP gateway, distributed: two gateway replicas', () => {
  let stack: DistributedStack;
  let browser: Browser;
  let connected: ConnectedMcpClient | undefined;

  beforeAll(async () => {
    stack = await startDistributedStack({
      replicas: { 'mcp-gateway': 2 },
      serviceEnv: { auth: { STACK_BOOTSTRAP_OWNER_EMAIL: owner.email, STACK_BOOTSTRAP_OWNER_PASSWORD: owner.password } },
    });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await connected?.close();
    await browser?.close();
    await stack?.stop();
  });

  it('signs in like Claude Code, lists and calls tools, on both gateway replicas', async () => {
    stack.proxy.resetHits();
    connected = await expectSignInAndToolCalls({ publicUrl: stack.publicUrl, browser, owner });
    const gateways = stack.processes.filter((p) => p.service === 'mcp-gateway').map((p) => p.url);
    expect(gateways).toHaveLength(2);
    const hits = stack.proxy.hits();
    for (const url of gateways) expect({ url, hits: hits[url] ?? 0 }).toEqual({ url, hits: expect.any(Number) });
    for (const url of gateways) expect(hits[url]).toBeGreaterThan(0);
  });

  it('refuses at the HTTP level: no token, forged token, other audience, revoked member, foreign Origin, bad version, step-up, malformed, oversized', async () => {
    const token = connected?.provider.tokens()?.access_token;
    expect(token).toBeDefined();
    await expectRefusals({ publicUrl: stack.publicUrl, browser, owner }, token!);
  });

  it('verifies the whole audit log for an admin over MCP', async () => {
    await expectWholeLogVerify({ publicUrl: stack.publicUrl, browser, owner });
  });
});
