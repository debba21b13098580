/**
 * The credential proxy in the one-process shape (`npm start`: embedded Postgres, in-process bus and
 * cache), against fake upstreams on loopback.
 */
import { startOneProcessStack, type OneProcessStack } from '@stack/testing';

import { ProxyClient, expectInjectedAndScrubbed, expectNoSecretInLogs, expectOneRefreshFor20Calls, startProxyFixture, type ProxyFixture } from './support/proxy-checks';

describe('credential proxy, one process', () => {
  let fx: ProxyFixture;
  let stack: OneProcessStack;
  let client: ProxyClient;

  beforeAll(async () => {
    fx = await startProxyFixture();
    stack = await startOneProcessStack({ env: fx.env, logLevel: 'debug' });
    client = new ProxyClient(stack.publicUrl, fx.internalSecret);
  });

  afterAll(async () => {
    await stack?.stop();
    await fx?.close();
  });

  it('injects the credential, scrubs it from the answer, and hides other operators’ connections', async () => {
    await expectInjectedAndScrubbed(client, fx);
  });

  it('refreshes an expired upstream OAuth token once while 20 concurrent calls wait', async () => {
    await expectOneRefreshFor20Calls([client], fx, stack.publicUrl);
  });

  it('writes no secret to any log line', () => {
    expectNoSecretInLogs(stack.process.logs(), fx.secrets());
  });
});
