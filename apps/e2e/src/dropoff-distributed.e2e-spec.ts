/**
 * Drop-offs on the distributed harness (six processes, NATS, Postgres, Redis, two passport
 * replicas): the MCP client (agent A) creates and deposits through the gateway, a plain HTTP
 * client with agent B's passport waits on one replica and collects; the stored row is checked
 * in Postgres (ciphertext never holds the plaintext; gone after collection or expiry).
 */
import { Pool } from 'pg';

import { startDistributedStack, type DistributedStack } from '@stack/testing';

import { expectExactlyOnce, expectExpiry, expectHandOffAcrossRuntimes, expectOperatorIsolation, setUpDropoffAgents, type DropoffWorld } from './support/dropoff-checks';
import { PassportClient } from './support/passport-client';

describe('drop-offs, distributed', () => {
  let stack: DistributedStack;
  let pool: Pool;
  let world: DropoffWorld;
  let agents: Awaited<ReturnType<typeof setUpDropoffAgents>>;

  beforeAll(async () => {
    stack = await startDistributedStack({ replicas: { passport: 2 }, env: { STACK_DROPOFF_SWEEP_MS: '500', STACK_MCP_RATE_LIMIT: '100000:100000' }, logLevel: 'warn' });
    pool = new Pool({ connectionString: stack.database.url, max: 2 });
    world = {
      publicUrl: stack.publicUrl,
      api: new PassportClient(stack.publicUrl, stack.internalSecret),
      sql: async (q, params) => (await pool.query(q, params)).rows as Array<Record<string, unknown>>,
    };
    agents = await setUpDropoffAgents(world);
  });

  afterAll(async () => {
    await agents?.mcp.close();
    await pool?.end();
    await stack?.stop();
  });

  it('MCP agent A creates and deposits, HTTP agent B waits and collects once; a wrong payload gets 422 pointers', () => expectHandOffAcrossRuntimes(world, agents));
  it('ten concurrent collectors across replicas, one success', () => expectExactlyOnce(world, agents));
  it('expires after its TTL: the row holds no ciphertext, DROPOFF_EXPIRED', () => expectExpiry(world, agents), 30_000);
  it("another operator's agent finds nothing", () => expectOperatorIsolation(world, agents, new PassportClient(stack.publicUrl, stack.internalSecret)));
});
