/**
 * Drop-offs end to end, the same checks for both shapes: agent A is an MCP client (the SDK's
 * client, A's passport as its bearer credential) that creates and deposits; agent B is a plain
 * HTTP client holding B's passport — the way a script in another language would — that waits
 * for the deposit and collects. `sql`, when given (the distributed shape's Postgres), lets the
 * checks look at the stored row itself.
 */
import { randomBytes } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import type { PassportClient } from './passport-client';

type ToolAnswer = { isError?: boolean; structuredContent?: Record<string, unknown>; content?: { type: string; text: string }[] };
type Sql = (query: string, params: unknown[]) => Promise<Array<Record<string, unknown>>>;

export interface DropoffWorld {
  publicUrl: string;
  api: PassportClient;
  sql?: Sql;
}

interface Agents {
  a: { id: string; token: string };
  b: { id: string; token: string };
  c: { id: string; token: string };
  mcp: Client;
  answers: string[];
}

const schema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['ticket', 'priority'],
  additionalProperties: false,
  properties: { ticket: { type: 'string', pattern: '^[A-Z]+-[0-9]+$' }, priority: { enum: ['low', 'high'] }, notes: { type: 'string' } },
};

function toolError(r: ToolAnswer): { code: string; details?: Record<string, unknown> } | undefined {
  if (!r.isError) return undefined;
  return (JSON.parse(r.content![0]!.text) as { error: { code: string; details?: Record<string, unknown> } }).error;
}

async function rest<T = Record<string, unknown>>(world: DropoffWorld, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T & { error?: { code: string; details?: Record<string, unknown> } } }> {
  const res = await fetch(`${world.publicUrl}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as never };
}

export async function setUpDropoffAgents(world: DropoffWorld): Promise<Agents> {
  const agent = async (name: string) => {
    const id = (await world.api.ok<{ id: string }>('POST', '/v1/agents/register', { name: `${name}-${randomBytes(3).toString('hex')}` })).id;
    return { id, token: (await world.api.issue(id, { intent_summary: `drop-offs as ${name}`, ttl_seconds: 1800 })).token };
  };
  const [a, b, c] = [await agent('writer'), await agent('reader'), await agent('reader-two')];
  const mcp = new Client({ name: 'dropoff-e2e-agent-a', version: '1.0.0' });
  await mcp.connect(new StreamableHTTPClientTransport(new URL(`${world.publicUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${a.token}` } } }));
  return { a, b, c, mcp, answers: [] };
}

async function tool(ag: Agents, name: string, args: Record<string, unknown>): Promise<ToolAnswer> {
  const r = (await ag.mcp.callTool({ name, arguments: args })) as ToolAnswer;
  ag.answers.push(JSON.stringify(r));
  return r;
}

/** MCP A creates; B waits over HTTP; A's wrong payload gets 422 pointers, the right one lands; B collects once. */
export async function expectHandOffAcrossRuntimes(world: DropoffWorld, ag: Agents): Promise<void> {
  const secret = `PLAIN-${randomBytes(8).toString('hex')}`;
  const { tools } = await ag.mcp.listTools();
  expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['stack_create_dropoff', 'stack_deposit', 'stack_collect']));

  const created = await tool(ag, 'stack_create_dropoff', { to_agent: ag.b.id, schema, ttl_seconds: 600 });
  expect(created.isError).toBeFalsy();
  const id = created.structuredContent!.id as string;
  expect(created.structuredContent).toMatchObject({ status: 'created', to_agents: [ag.b.id], created_by: { agent_id: ag.a.id } });

  // B, in "another runtime", long-polls for the deposit.
  const waiting = rest<{ status: string }>(world, ag.b.token, 'GET', `/v1/dropoffs/${id}?wait=20`);
  await new Promise((r) => setTimeout(r, 300));

  const wrong = await tool(ag, 'stack_deposit', { dropoff_id: id, payload: { ticket: 'nope', priority: 'urgent', extra: 1 } });
  const err = toolError(wrong);
  expect(err?.code).toBe('SCHEMA_VALIDATION_FAILED');
  expect((err!.details!.errors as Array<{ pointer: string }>).map((e) => e.pointer).sort()).toEqual(['', '/priority', '/ticket']);
  // The same refusal over REST is a 422 with the same pointers.
  const wrongRest = await rest(world, ag.a.token, 'POST', `/v1/dropoffs/${id}/deposit`, { payload: { ticket: 'ABC-1' } });
  expect(wrongRest.status).toBe(422);
  expect(wrongRest.body.error).toMatchObject({ code: 'SCHEMA_VALIDATION_FAILED', details: { errors: [expect.objectContaining({ pointer: '', keyword: 'required' })] } });

  const payload = { ticket: 'OPS-42', priority: 'high', notes: secret };
  const right = await tool(ag, 'stack_deposit', { dropoff_id: id, payload });
  expect(right.isError).toBeFalsy();
  expect(right.structuredContent).toMatchObject({ id, status: 'deposited' });
  expect((await waiting).body.status).toBe('deposited');

  if (world.sql) {
    const [row] = await world.sql(`SELECT status, ciphertext::text AS sealed FROM passport.dropoffs WHERE id = $1`, [id]);
    expect(row!.status).toBe('deposited');
    expect(row!.sealed as string).not.toContain(secret);
    expect(row!.sealed as string).not.toContain('OPS-42');
    expect(row!.sealed as string).not.toContain(Buffer.from(secret).toString('base64'));
  }

  const collected = await rest<{ payload: unknown; collected_by: string }>(world, ag.b.token, 'POST', `/v1/dropoffs/${id}/collect`);
  expect(collected.status).toBe(200);
  expect(collected.body).toMatchObject({ payload, collected_by: ag.b.id, created_by: { agent_id: ag.a.id } });
  const again = await rest(world, ag.b.token, 'POST', `/v1/dropoffs/${id}/collect`);
  expect(again.status).toBe(409);
  expect(again.body.error).toMatchObject({ code: 'DROPOFF_ALREADY_COLLECTED', details: { collected_by: ag.b.id } });
  if (world.sql) expect((await world.sql(`SELECT ciphertext FROM passport.dropoffs WHERE id = $1`, [id]))[0]!.ciphertext).toBeNull();

  // A is not a recipient; the tool says so as a tool error.
  expect(toolError(await tool(ag, 'stack_collect', { dropoff_id: id }))?.code).toMatch(/FORBIDDEN|DROPOFF_ALREADY_COLLECTED/);
  // Nothing A saw through MCP carries what it did not send.
  expect(ag.answers.filter((a) => a.includes(secret))).toHaveLength(0);

  // B collects over MCP, waiting for a deposit that comes later: the gateway waits first (read-only)
  // and takes only once the deposit is there and B still waits.
  const later = await tool(ag, 'stack_create_dropoff', { to_agent: ag.b.id, schema, ttl_seconds: 600 });
  const laterId = later.structuredContent!.id as string;
  const mcpB = new Client({ name: 'dropoff-e2e-agent-b', version: '1.0.0' });
  await mcpB.connect(new StreamableHTTPClientTransport(new URL(`${world.publicUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${ag.b.token}` } } }));
  try {
    const collecting = mcpB.callTool({ name: 'stack_collect', arguments: { dropoff_id: laterId, wait_seconds: 20 } }) as Promise<ToolAnswer>;
    await new Promise((r) => setTimeout(r, 300));
    expect((await tool(ag, 'stack_deposit', { dropoff_id: laterId, payload: { ticket: 'OPS-43', priority: 'low' } })).isError).toBeFalsy();
    const got = await collecting;
    expect(got.isError).toBeFalsy();
    expect(got.structuredContent).toMatchObject({ dropoff_id: laterId, payload: { ticket: 'OPS-43', priority: 'low' }, collected_by: ag.b.id });
  } finally {
    await mcpB.close();
  }
}

/** Ten collectors at once over HTTP (two recipient agents): exactly one gets it. */
export async function expectExactlyOnce(world: DropoffWorld, ag: Agents): Promise<void> {
  const created = await tool(ag, 'stack_create_dropoff', { to_agents: [ag.b.id, ag.c.id], schema, payload: { ticket: 'SEC-7', priority: 'low' } });
  const id = created.structuredContent!.id as string;
  expect(created.structuredContent!.status).toBe('deposited');
  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => rest(world, (i % 2 ? ag.b : ag.c).token, 'POST', `/v1/dropoffs/${id}/collect`)));
  expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
  const losers = answers.filter((a) => a.status !== 200);
  expect(losers.map((l) => l.status)).toEqual(Array(9).fill(409));
  const winner = (answers.find((a) => a.status === 200)!.body as { collected_by: string }).collected_by;
  expect(new Set(losers.map((l) => l.body.error!.details!.collected_by))).toEqual(new Set([winner]));
}

/** After its TTL the payload is gone (in Postgres, when we can look) and collecting says DROPOFF_EXPIRED. */
export async function expectExpiry(world: DropoffWorld, ag: Agents): Promise<void> {
  const created = await tool(ag, 'stack_create_dropoff', { to_agent: ag.b.id, schema, payload: { ticket: 'EXP-1', priority: 'low' }, ttl_seconds: 10 });
  const id = created.structuredContent!.id as string;
  const expiresAt = Date.parse(created.structuredContent!.expires_at as string);
  await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 1500));
  if (world.sql) {
    // The sweeper got there without anyone reading it.
    let row: Record<string, unknown> | undefined;
    for (let i = 0; i < 50; i++) {
      row = (await world.sql(`SELECT status, ciphertext FROM passport.dropoffs WHERE id = $1`, [id]))[0];
      if (row?.status === 'expired') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(row).toMatchObject({ status: 'expired', ciphertext: null });
  }
  const late = await rest(world, ag.b.token, 'POST', `/v1/dropoffs/${id}/collect`);
  expect(late.status).toBe(410);
  expect(late.body.error?.code).toBe('DROPOFF_EXPIRED');
}

/** Who may touch it: another operator's credential finds nothing. */
export async function expectOperatorIsolation(world: DropoffWorld, ag: Agents, other: PassportClient): Promise<void> {
  const created = await tool(ag, 'stack_create_dropoff', { to_agent: ag.b.id, schema, payload: { ticket: 'ISO-1', priority: 'low' } });
  const id = created.structuredContent!.id as string;
  const stranger = await other.ok<{ id: string }>('POST', '/v1/agents/register', { name: `stranger-${randomBytes(3).toString('hex')}` });
  const token = (await other.issue(stranger.id)).token;
  const seen = await rest(world, token, 'POST', `/v1/dropoffs/${id}/collect`);
  expect(seen.status).toBe(404);
  expect(seen.body.error?.code).toBe('NOT_FOUND');
  expect((await rest(world, ag.b.token, 'POST', `/v1/dropoffs/${id}/collect`)).status).toBe(200);
}
