/**
 * The foundation in the one-process shape, started exactly as a newcomer does: `npm start`
 * (tools/bootstrap.mjs start), all six services in one Node process, embedded Postgres,
 * in-process bus and cache.
 */
import { SERVICE_NAMES } from '@stack/contracts';
import { startOneProcessStack, type OneProcessStack } from '@stack/testing';

import { expectErrorEnvelope, expectMetrics, expectOpenApiParses, expectPeersAnswer, expectReady, expectRequestIdLogged, expectRoutesToOwners } from './support/foundation-checks';

describe('foundation, one process (npm start)', () => {
  let stack: OneProcessStack;

  beforeAll(async () => {
    stack = await startOneProcessStack({ viaNpmStart: true });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('tells a newcomer where STACK runs and how to connect Claude Code', async () => {
    const line = await stack.process.waitForLog('claude mcp add stack --transport http', 10_000);
    expect(line).toContain(`${stack.publicUrl}/mcp`);
  });

  it('is ready: every service database, a bus round trip and the cache', async () => {
    const body = await expectReady(stack.publicUrl, SERVICE_NAMES);
    expect(body.services.sort()).toEqual([...SERVICE_NAMES].sort());
  });

  it('has every service answer a ping from every other service over the in-process bus', async () => {
    await expectPeersAnswer(stack.publicUrl, SERVICE_NAMES);
  });

  it('serves every public path from the one process', async () => {
    await expectRoutesToOwners(stack.publicUrl, () => 'all');
  });

  it('answers errors in the envelope, serves OpenAPI and metrics, logs request ids', async () => {
    await expectErrorEnvelope(stack.publicUrl);
    await expectOpenApiParses(stack.publicUrl);
    await expectMetrics(stack.publicUrl);
    await expectRequestIdLogged(stack.publicUrl, () => stack.process.logs());
  });

  it('stops gracefully on SIGTERM and exits 0', async () => {
    const code = await stack.process.stop({ signal: 'SIGTERM', timeoutMs: 15_000 });
    expect(code).toBe(0);
    expect(stack.process.logs().some((l) => l.includes('"msg":"stopped"'))).toBe(true);
  });
});
