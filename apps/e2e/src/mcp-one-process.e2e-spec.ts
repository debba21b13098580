/** The same MCP sign-in and tool calls against the one process `npm start` runs. */
import type { Browser } from 'playwright-core';

import { startOneProcessStack, type OneProcessStack } from '@stack/testing';

import { expectRefusals, expectSignInAndToolCalls, expectWholeLogVerify } from './support/mcp-checks';
import { launchChromium, type ConnectedMcpClient } from './support/mcp-oauth-client';

const owner = { email: 'owner@one.example', password: 'owner-password-for-one-1' };

describe('MCP gateway, one process', () => {
  let stack: OneProcessStack;
  let browser: Browser;
  let connected: ConnectedMcpClient | undefined;

  beforeAll(async () => {
    stack = await startOneProcessStack({ env: { STACK_BOOTSTRAP_OWNER_EMAIL: owner.email, STACK_BOOTSTRAP_OWNER_PASSWORD: owner.password } });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await connected?.close();
    await browser?.close();
    await stack?.stop();
  });

  it('signs in like Claude Code, lists and calls tools', async () => {
    connected = await expectSignInAndToolCalls({ publicUrl: stack.publicUrl, browser, owner });
  });

  it('refuses at the HTTP level as the distributed shape does', async () => {
    await expectRefusals({ publicUrl: stack.publicUrl, browser, owner }, connected!.provider.tokens()!.access_token);
  });

  it('verifies the whole audit log for an admin over MCP', async () => {
    await expectWholeLogVerify({ publicUrl: stack.publicUrl, browser, owner });
  });
});
