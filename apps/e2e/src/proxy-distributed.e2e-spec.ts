/**
 * The credential proxy distributed: two credential-proxy replicas (separate processes) on the real
 * Postgres, NATS and Redis behind the reverse proxy, against fake upstreams on loopback. The
 * OAuth refresh is shared across the replicas through the Redis lock.
 */
import { startDistributedStack, type DistributedStack } from '@stack/testing';

import { ProxyClient, expectInjectedAndScrubbed, expectNoSecretInLogs, expectOneRefreshFor20Calls, startProxyFixture, type ProxyFixture } from './support/proxy-checks';

describe('credential proxy, distributed (two replicas)', () => {
  let fx: ProxyFixture;
  let stack: DistributedStack;

  beforeAll(async () => {
    fx = await startProxyFixture();
    stack = await startDistributedStack({ services: ['credential-proxy', 'passport'], replicas: { 'credential-proxy': 2 }, env: fx.env, logLevel: 'debug' });
  });

  afterAll(async () => {
    await stack?.stop();
    await fx?.close();
  });

  it('injects the credential, scrubs it from the answer, and hides other operators’ connections', async () => {
    await expectInjectedAndScrubbed(new ProxyClient(stack.publicUrl, fx.internalSecret), fx);
  });

  it('refreshes an expired upstream OAuth token once while 20 concurrent calls on both replicas wait', async () => {
    // Each client talks to one replica directly, so both really take part.
    const replicas = stack.processes.filter((p) => p.service === 'credential-proxy').map((p) => new ProxyClient(p.url, fx.internalSecret));
    expect(replicas).toHaveLength(2);
    await expectOneRefreshFor20Calls(replicas, fx, stack.publicUrl);
  });

  it('writes no secret to any log line of any process', () => {
    expectNoSecretInLogs(stack.logs(), fx.secrets());
  });
});
