/**
 * Drop-offs in the one-process shape (`npm start`): an MCP client hands a payload to a plain
 * HTTP client holding another agent's passport; exactly one of ten collectors wins; expiry.
 */
import { generateStackSecrets, startOneProcessStack, type OneProcessStack } from '@stack/testing';

import { expectExactlyOnce, expectExpiry, expectHandOffAcrossRuntimes, expectOperatorIsolation, setUpDropoffAgents } from './support/dropoff-checks';
import { PassportClient } from './support/passport-client';

describe('drop-offs, one process', () => {
  let stack: OneProcessStack;
  let world: { publicUrl: string; api: PassportClient };
  let agents: Awaited<ReturnType<typeof setUpDropoffAgents>>;
  let internalSecret: string;

  beforeAll(async () => {
    internalSecret = generateStackSecrets().internalSecret;
    stack = await startOneProcessStack({ env: { STACK_INTERNAL_SECRET: internalSecret, STACK_DROPOFF_SWEEP_MS: '500', STACK_MCP_RATE_LIMIT: '100000:100000' } });
    world = { publicUrl: stack.publicUrl, api: new PassportClient(stack.publicUrl, internalSecret) };
    agents = await setUpDropoffAgents(world);
  });

  afterAll(async () => {
    await agents?.mcp.close();
    await stack?.stop();
  });

  it('MCP agent A creates and deposits, HTTP agent B waits and collects once; a wrong payload gets 422 pointers', () => expectHandOffAcrossRuntimes(world, agents));
  it('ten concurrent collectors, one success', () => expectExactlyOnce(world, agents));
  it('expires after its TTL: DROPOFF_EXPIRED', () => expectExpiry(world, agents), 30_000);
  it("another operator's agent finds nothing", () => expectOperatorIsolation(world, agents, new PassportClient(stack.publicUrl, internalSecret)));
});
