/**
 * The credential proxy in the one-process shape (`npm start`: embedded Postgres, in-process bus and
 * cache), against fake upstreams on loopback; the connect link is used in headless Chromium.
 */
import { startOneProcessStack, type OneProcessStack } from '@stack/testing';
import type { Browser } from 'playwright-core';

import { launchBrowser } from './support/auth-client';
import { ProxyClient, expectConnectLinkInBrowser, expectInjectedAndScrubbed, expectNoSecretInLogs, expectOneRefreshFor20Calls, startProxyFixture, type ProxyFixture } from './support/proxy-checks';

describe('credential proxy, one process', () => {
  let fx: ProxyFixture;
  let stack: OneProcessStack;
  let client: ProxyClient;
  let browser: Browser;

  beforeAll(async () => {
    fx = await startProxyFixture();
    stack = await startOneProcessStack({ env: fx.env, logLevel: 'debug' });
    client = new ProxyClient(stack.publicUrl, fx.internalSecret);
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await fx?.close();
  });

  it('injects the credential, scrubs it from the answer, and hides other operators’ connections', async () => {
    await expectInjectedAndScrubbed(client, fx);
  });

  it('refreshes an expired upstream OAuth token once while 20 concurrent calls wait', async () => {
    await expectOneRefreshFor20Calls([client], fx, stack.publicUrl);
  });

  it('a connect link works in a real browser: the form posts with the page’s own Origin and connects', async () => {
    await expectConnectLinkInBrowser(client, fx, browser);
  });

  it('writes no secret to any log line', () => {
    expectNoSecretInLogs(stack.process.logs(), fx.secrets());
  });
});
