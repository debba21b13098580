/**
 * Every STACK tool, as the gateway really lists it (the contracts' catalogue), driven through the
 * MCP SDK's own client — which checks structuredContent against the tool's outputSchema and throws
 * on a mismatch — and each result checked once more with a separate Ajv (draft-07, full formats,
 * as the SDK's). The owning services are stand-ins on the real NATS bus answering in every shape
 * their contracts allow (empty lists, optional fields absent, nulls, truncated and base64 proxy
 * bodies, replayed answers, cursors); refusals come back as tool errors (isError, the envelope, no
 * structuredContent), which the SDK's client must accept too.
 */

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

import type { BusConnection } from '@stack/bus';
import { DROPOFF_COMMANDS, MCP_TOOLS, PASSPORT_TTL, StackError, type CommandDef } from '@stack/contracts';
import type { RunningStack, ServiceDefinition } from '@stack/runtime';

import { McpGatewayModule } from './mcp-gateway.module';
import { startGatewayWithStandIns } from './testing/gateway-with-stand-ins';
import type { Principal, TokenVerifier } from './principal';

const ALL_SCOPES = ['stack:services', 'stack:passports', 'stack:audit', 'stack:dropoffs', 'stack:admin'];

const verifier: TokenVerifier = {
  name: 'test',
  accepts: (t) => t.startsWith('test|'),
  async verify(token): Promise<Principal> {
    const [, member] = token.split('|');
    return { credential: 'oauth', caller: { issuer: 'mcp-gateway', kind: 'member', operator_id: 'op_conformance', member_id: member, scopes: ALL_SCOPES }, rateKeys: [`member:${member}`] };
  },
};

const gateway: ServiceDefinition = {
  service: 'mcp-gateway',
  module: McpGatewayModule.register({ tools: MCP_TOOLS, verifiers: () => [verifier] }),
  entities: [],
  migrations: [],
  rawBodyPaths: ['/mcp'],
};
const audit: ServiceDefinition = { service: 'audit', module: class AuditTestModule {}, entities: [], migrations: [] };

// ---- what the services may answer ------------------------------------------------------------

const NOW = new Date().toISOString();
const LATER = new Date(Date.now() + 900_000).toISOString();
const agent = (over: Record<string, unknown> = {}) => ({ id: 'agt_1', operator_id: 'op_conformance', name: 'reader', description: null, created_at: NOW, updated_at: NOW, ...over });
const constraint = { path: 'url.pathname', op: 'starts_with', value: '/repos/acme/' };
const grant = (over: Record<string, unknown> = {}) => ({ id: 'grt_1', agent_id: 'agt_1', connection_id: 'scon_1', service_id: 'github', service_name: 'GitHub', scopes: ['repo:read'], constraints: [], created_at: NOW, ...over });
const issued = { token: 'eyJhbGciOiJFZERTQSJ9.e30.sig', jti: 'ppt_abc', expires_at: LATER };
const claims = {
  jti: 'ppt_abc',
  sub: 'agt_1',
  iss: 'http://stack.test',
  aud: 'http://stack.test',
  iat: 1_700_000_000,
  exp: 1_700_000_900,
  stk: {
    operator_id: 'op_conformance',
    agent_id: 'agt_1',
    agent_name: 'reader',
    member_id: 'mem_1',
    session_id: 'ses_1',
    issued_at_ms: 1_700_000_000_000,
    chain: [],
    delegation_depth: 0,
    intent_summary: '',
    intent_services: [],
    services: [{ connection_id: 'scon_1', service_id: 'github', service_name: 'GitHub', scopes: ['repo:read'], constraints: [constraint] }],
  },
};
const summary = (over: Record<string, unknown> = {}) => ({ jti: 'ppt_abc', agent_id: 'agt_1', member_id: 'mem_1', session_id: 'ses_1', parent_jti: null, delegation_depth: 0, issued_at: NOW, expires_at: LATER, intent_summary: '', connection_ids: [], ...over });
const revocation = (kind: string, value: string, reason?: string) => ({ revoked: { id: 'rev_1', kind, value, operator_id: 'op_conformance', revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 3_900_000, ...(reason ? { reason } : {}) } });
const entry = (over: Record<string, unknown> = {}) => ({ id: 'aud_0123456789', occurred_at: NOW, operator_id: 'op_conformance', layer: 'gateway', action: 'tool.stack_list_agents', outcome: 'success', leaf_index: 0, ...over });
const checkpoint = { origin: 'stack.test/audit/op_conformance/1', tree_id: 1, tree_size: 3, root_hash: 'AAAA', note: 'stack.test/audit/op_conformance/1\n3\nAAAA\n\n— key sig\n', signed_at: NOW };
const dropoff = (over: Record<string, unknown> = {}) => ({ id: 'drp_0123456789abcdef', status: 'created', to_agents: ['agt_2'], schema: { type: 'object' }, created_by: {}, created_at: NOW, expires_at: LATER, ...over });
const proxied = (over: Record<string, unknown> = {}) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}', body_encoding: 'utf8', truncated: false, connection_id: 'scon_1', duration_ms: 12.345, ...over });
const service = (connections: unknown[]) => ({ service_id: 'github', name: 'GitHub', base_url: 'https://api.github.com', auth: { type: 'bearer' }, allowed_hosts: ['api.github.com'], scopes: ['repo:read'], builtin: true, oauth: true, connections });
const connection = { id: 'scon_1', service_id: 'github', name: 'acme', kind: 'oauth2', status: 'active', base_url: null, expires_at: null, created_at: NOW, verified_at: null };

interface Case {
  tool: string;
  args: Record<string, unknown>;
  /** What the stand-in service answers (a function may throw a StackError). */
  answer: unknown;
  why: string;
}

/** Success results, every tool, in the shapes its service may answer. */
const SUCCESSES: Case[] = [
  { tool: 'stack_list_services', args: {}, answer: { items: [] }, why: 'an empty catalogue' },
  { tool: 'stack_list_services', args: {}, answer: { items: [service([]), { ...service([connection]), service_id: 'custom', auth: { type: 'header', name: 'X-Key' }, builtin: false, oauth: false }] }, why: 'connections with null fields, auth.name present and absent' },
  { tool: 'stack_connect_service', args: { service_id: 'jira', name: 'acme', base_url: 'https://acme.atlassian.net' }, answer: { url: 'http://stack.test/connect/abc', expires_at: LATER, service_id: 'jira', name: 'acme' }, why: 'a link' },
  { tool: 'stack_proxy_request', args: { service: 'github', method: 'GET', path: '/user' }, answer: proxied(), why: 'a JSON body' },
  { tool: 'stack_proxy_request', args: { service: 'scon_1', method: 'GET', url: 'https://api.github.com/x.png', query: { size: 2, raw: true } }, answer: proxied({ headers: { 'content-type': 'image/png' }, body: Buffer.alloc(600_000, 7).toString('base64'), body_encoding: 'base64', truncated: true }), why: 'a base64 body cut to fit the bus' },
  { tool: 'stack_proxy_request', args: { service: 'scon_1', method: 'POST', path: '/issues', body: { title: 't' }, idempotency_key: 'k-1' }, answer: proxied({ status: 201, replayed: true, duration_ms: 0 }), why: 'a replayed idempotent answer' },
  { tool: 'stack_proxy_request', args: { service: 'scon_1', method: 'DELETE', path: '/x', headers: { accept: 'text/plain' } }, answer: proxied({ status: 302, headers: { location: '/elsewhere' }, body: '' }), why: 'a redirect with an empty body' },
  { tool: 'stack_register_agent', args: { name: 'reader' }, answer: agent(), why: 'no description (null)' },
  { tool: 'stack_register_agent', args: { name: 'writer', description: 'writes' }, answer: agent({ name: 'writer', description: 'writes' }), why: 'a description' },
  { tool: 'stack_list_agents', args: {}, answer: { agents: [] }, why: 'none' },
  { tool: 'stack_list_agents', args: {}, answer: { agents: [agent(), agent({ id: 'agt_2', name: 'writer', description: 'x' })] }, why: 'two' },
  { tool: 'stack_grant_agent_access', args: { agent_id: 'agt_1', connection_id: 'scon_1', scopes: ['repo:read'] }, answer: grant(), why: 'no constraints' },
  { tool: 'stack_grant_agent_access', args: { agent_id: 'agt_1', connection_id: 'scon_1', scopes: [], constraints: [constraint, { path: 'method', op: 'in', value: ['GET', 'HEAD'] }] }, answer: grant({ scopes: [], constraints: [constraint, { path: 'method', op: 'in', value: ['GET', 'HEAD'] }] }), why: 'constraints, list values' },
  { tool: 'stack_issue_passport', args: { agent_id: 'agt_1' }, answer: issued, why: 'defaults' },
  { tool: 'stack_issue_passport', args: { agent_id: 'agt_1', ttl_seconds: PASSPORT_TTL.maxSeconds, intent_summary: 'read issues', intent_services: ['github'], services: [{ connection_id: 'scon_1', scopes: ['repo:read'], constraints: [constraint] }] }, answer: issued, why: 'every field' },
  { tool: 'stack_verify_passport', args: { token: issued.token }, answer: { valid: true, revoked: false, claims }, why: 'valid, with claims' },
  { tool: 'stack_verify_passport', args: { token: 'nonsense' }, answer: { valid: false, revoked: false, reason: 'not a passport', code: 'UNAUTHORIZED' }, why: 'invalid, no claims' },
  { tool: 'stack_verify_passport', args: { token: issued.token }, answer: { valid: false, revoked: true, claims: { ...claims, stk: { ...claims.stk, chain: ['ppt_root'], delegation_depth: 1 } }, reason: 'revoked (jti)', code: 'PASSPORT_REVOKED' }, why: 'revoked, delegated' },
  { tool: 'stack_delegate_passport', args: { parent_token: issued.token, child_agent_id: 'agt_2', services: [], ttl_seconds: 1 }, answer: { ...issued, jti: 'ppt_child' }, why: 'a child' },
  { tool: 'stack_list_active_passports', args: {}, answer: { passports: [] }, why: 'none' },
  { tool: 'stack_list_active_passports', args: { agent_id: 'agt_1', session_id: 'ses_1' }, answer: { passports: [summary(), summary({ jti: 'ppt_child', parent_jti: 'ppt_abc', delegation_depth: 1, connection_ids: ['scon_1'] })] }, why: 'root and child' },
  { tool: 'stack_revoke_passport', args: { jti: 'ppt_abc' }, answer: revocation('jti', 'ppt_abc'), why: 'no reason' },
  { tool: 'stack_revoke_agent_passports', args: { agent_id: 'agt_1', reason: 'leaked' }, answer: revocation('agent', 'agt_1', 'leaked'), why: 'a reason' },
  { tool: 'stack_revoke_session', args: { session_id: 'ses_1' }, answer: revocation('session', 'ses_1'), why: 'a session' },
  { tool: 'stack_revoke_all_passports', args: { confirm: true, reason: 'incident' }, answer: revocation('operator', 'op_conformance', 'incident'), why: 'everything' },
  { tool: 'stack_audit_list', args: {}, answer: { items: [] }, why: 'an empty page, no cursor' },
  { tool: 'stack_audit_list', args: { limit: 2, cursor: 'MS4x', outcome: 'denied', since: NOW, until: LATER, action: 'tool.stack_list_agents' }, answer: { items: [{ entry: entry(), leaf_index: 0, tree_id: 1 }, { entry: entry({ id: 'aud_abcdefghij', leaf_index: 1, member_id: 'mem_1', target: { service: 'mcp-gateway', method: 'POST', path: '/mcp' }, duration_ms: 3, error_code: 'OUT_OF_SCOPE', outcome: 'denied' }), leaf_index: 1 }], next_cursor: 'MS4w' }, why: 'a page and a cursor' },
  { tool: 'stack_audit_verify', args: { entry_id: 'aud_0123456789' }, answer: { verdict: 'valid', checkpoint, entry: entry(), inclusion: { leaf_index: 0, tree_size: 3, hashes: ['AAAA', 'BBBB'] }, tree_size: 3 }, why: 'an entry' },
  { tool: 'stack_audit_verify', args: {}, answer: { verdict: 'invalid', reason: 'leaf 2 does not match', checkpoint, tree_size: 3, first_failure: { leaf_index: 2 } }, why: 'the whole log, broken' },
  { tool: 'stack_audit_verify', args: {}, answer: { verdict: 'valid', tree_size: 0 }, why: 'an empty log, no checkpoint' },
  { tool: 'stack_create_dropoff', args: { to_agent: 'writer', schema: { type: 'object' } }, answer: dropoff(), why: 'created, no payload' },
  { tool: 'stack_create_dropoff', args: { to_agents: ['agt_2', 'agt_3'], schema: true, ttl_seconds: 10, payload: { a: 1 } }, answer: dropoff({ status: 'deposited', to_agents: ['agt_2', 'agt_3'], schema: true, created_by: { member_id: 'mem_1' }, deposited_at: NOW, payload_bytes: 7 }), why: 'deposited at once, a boolean schema' },
  { tool: 'stack_deposit', args: { dropoff_id: 'drp_0123456789abcdef', payload: null }, answer: dropoff({ status: 'deposited', deposited_at: NOW, payload_bytes: 4 }), why: 'a null payload' },
  { tool: 'stack_collect', args: { dropoff_id: 'drp_0123456789abcdef' }, answer: { dropoff_id: 'drp_0123456789abcdef', payload: { a: [1, 2] }, collected_at: NOW, collected_by: 'agt_2', created_by: { member_id: 'mem_1' } }, why: 'an object payload' },
  { tool: 'stack_collect', args: { dropoff_id: 'drp_0123456789abcdef', wait_seconds: 1 }, answer: { dropoff_id: 'drp_0123456789abcdef', payload: null, collected_at: NOW, collected_by: 'agt_2', created_by: { agent_id: 'agt_1' } }, why: 'a null payload, after a wait' },
  { tool: 'stack_collect', args: { dropoff_id: 'drp_0123456789abcdef' }, answer: { dropoff_id: 'drp_0123456789abcdef', payload: ['x', 2], collected_at: NOW, collected_by: 'agt_2', created_by: {} }, why: 'an array payload' },
];

describe('every MCP tool, through the SDK client, against its declared schemas', () => {
  let stack: RunningStack;
  let stop: (() => Promise<void>) | undefined;
  let standIn: BusConnection;
  let client: Client;
  let tools: Map<string, Tool>;
  const outputValidators = new Map<string, ValidateFunction>();
  const inputValidators = new Map<string, ValidateFunction>();
  /** What the stand-ins answer next, by tool name. */
  const answers = new Map<string, unknown>();
  const calls: Array<{ command: string; payload: unknown }> = [];

  beforeAll(async () => {
    ({ stack, standIn, stop } = await startGatewayWithStandIns({ available: [gateway, audit], name: 'gwc', rateLimit: '1000:100', logLevel: 'fatal', standInId: 'stand-in-services' }));
    const serve = (command: CommandDef, tool: string) =>
      standIn.forService(command.service).handle(command, async (payload) => {
        calls.push({ command: command.name, payload });
        const a = answers.get(tool);
        if (typeof a === 'function') return (a as (p: unknown) => unknown)(payload);
        return a;
      });
    for (const t of MCP_TOOLS) serve(t.command, t.name);
    // stack_collect's wait goes first to the read-only get.
    serve(DROPOFF_COMMANDS.get, 'stack_collect:wait');
    answers.set('stack_collect:wait', SUCCESSES.find((c) => c.tool === 'stack_create_dropoff')!.answer);
    await standIn.flush();

    client = new Client({ name: 'conformance-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${stack.url}/mcp`), { requestInit: { headers: { Authorization: 'Bearer test|mem_1' } } }));
    // listTools also makes the SDK's client check every later structuredContent against the outputSchema.
    tools = new Map((await client.listTools()).tools.map((t) => [t.name, t]));
    const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true });
    addFormats(ajv);
    for (const t of tools.values()) {
      outputValidators.set(t.name, ajv.compile(t.outputSchema!));
      inputValidators.set(t.name, ajv.compile(t.inputSchema));
    }
  });

  afterAll(async () => {
    await client?.close();
    await stop?.();
  });

  const text = (r: object) => ((r as { content: { type: string; text: string }[] }).content)[0]!.text;
  const call = async (tool: string, args: Record<string, unknown>, answer: unknown) => {
    answers.set(tool, answer);
    return client.callTool({ name: tool, arguments: args });
  };
  const expectToolError = (r: Awaited<ReturnType<typeof call>>, code: string) => {
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toBeUndefined();
    expect(JSON.parse(text(r))).toMatchObject({ error: { code, message: expect.any(String) } });
  };

  it('lists every tool of the catalogue with an object input and output schema and the annotations DESIGN asks for', () => {
    expect([...tools.keys()].sort()).toEqual(MCP_TOOLS.map((t) => t.name).sort());
    const reads = ['stack_list_services', 'stack_list_agents', 'stack_verify_passport', 'stack_list_active_passports', 'stack_audit_list', 'stack_audit_verify'];
    const destructive = ['stack_proxy_request', 'stack_grant_agent_access', 'stack_revoke_passport', 'stack_revoke_agent_passports', 'stack_revoke_session', 'stack_revoke_all_passports', 'stack_collect'];
    for (const t of tools.values()) {
      expect({ tool: t.name, input: t.inputSchema.type, output: t.outputSchema?.type }).toEqual({ tool: t.name, input: 'object', output: 'object' });
      expect(t.description!.length).toBeGreaterThan(40);
      const a = t.annotations!;
      expect({ tool: t.name, readOnly: a.readOnlyHint, destructive: a.destructiveHint }).toEqual({ tool: t.name, readOnly: reads.includes(t.name), destructive: destructive.includes(t.name) });
      // A read is idempotent; so is a revocation (a second one kills nothing more) and a grant (it replaces).
      if (reads.includes(t.name) || t.name.startsWith('stack_revoke_') || t.name === 'stack_grant_agent_access') expect({ tool: t.name, idempotent: a.idempotentHint }).toEqual({ tool: t.name, idempotent: true });
      expect({ tool: t.name, openWorld: a.openWorldHint }).toEqual({ tool: t.name, openWorld: t.name === 'stack_proxy_request' });
    }
  });

  it('has a success case here for every tool', () => {
    expect([...new Set(SUCCESSES.map((c) => c.tool))].sort()).toEqual([...tools.keys()].sort());
  });

  it.each(SUCCESSES.map((c) => [c.tool, c.why, c] as const))('%s (%s): structuredContent conforms to the outputSchema and the text says the same', async (_tool, _why, c) => {
    // The arguments are ones the inputSchema allows, and the gateway sends them on as they are.
    const input = inputValidators.get(c.tool)!;
    expect({ args: c.args, valid: input(c.args), errors: input.errors }).toMatchObject({ valid: true });
    const r = await call(c.tool, c.args, c.answer);
    expect({ isError: r.isError, text: r.isError ? text(r) : undefined }).toEqual({ isError: undefined, text: undefined });
    const validate = outputValidators.get(c.tool)!;
    expect({ valid: validate(r.structuredContent), errors: validate.errors }).toEqual({ valid: true, errors: null });
    expect(JSON.parse(text(r))).toEqual(r.structuredContent);
    expect(r.structuredContent).toEqual(c.answer);
  });

  it.each(MCP_TOOLS.map((t) => [t.name]))('%s: a refusal by its service is a tool error the SDK client accepts (no structuredContent)', async (tool) => {
    const r = await call(tool, fullestArgs(tool), () => {
      throw new StackError('NOT_FOUND', 'no such thing');
    });
    expectToolError(r, 'NOT_FOUND');
  });

  /** The arguments of a tool's fullest success case. */
  const fullestArgs = (tool: string) => SUCCESSES.filter((c) => c.tool === tool).reduce((a, c) => (Object.keys(c.args).length > Object.keys(a).length ? c.args : a), {} as Record<string, unknown>);
  const TAKING_ARGUMENTS = MCP_TOOLS.filter((t) => Object.keys((t.input as unknown as { properties?: object }).properties ?? {}).length > 0).map((t) => [t.name]);

  it.each(TAKING_ARGUMENTS)('%s: arguments of the wrong type are a tool error, never sent on', async (tool) => {
    const before = calls.length;
    const wrong = Object.fromEntries(Object.keys(fullestArgs(tool)).map((k) => [k, { wrong: 'type' }]));
    expect(Object.keys(wrong).length).toBeGreaterThan(0);
    expectToolError(await call(tool, wrong, { never: 'used' }), 'INVALID_REQUEST');
    expect(calls.length).toBe(before);
  });

  it('refuses at the schema what the passport service would refuse: a ttl outside 60–3600 s, a child ttl under 1 s', async () => {
    const issue = inputValidators.get('stack_issue_passport')!;
    expect([30, 59, 60, 900, 3600, 3601].map((ttl_seconds) => issue({ agent_id: 'agt_1', ttl_seconds }))).toEqual([false, false, true, true, true, false]);
    expect(inputValidators.get('stack_delegate_passport')!({ parent_token: 't', child_agent_id: 'a', services: [], ttl_seconds: 0 })).toBe(false);
    const before = calls.length;
    expectToolError(await call('stack_issue_passport', { agent_id: 'agt_1', ttl_seconds: 30 }, issued), 'INVALID_REQUEST');
    expect(calls.length).toBe(before);
  });

  it('answers a service reply that does not match the outputSchema with a tool error, not a result the client would reject', async () => {
    // next_cursor: null, a missing field, a number as a string, a bare value.
    for (const [tool, args, answer] of [
      ['stack_audit_list', {}, { items: [], next_cursor: null }],
      ['stack_issue_passport', { agent_id: 'agt_1' }, { token: 't', jti: 'ppt_x' }],
      ['stack_proxy_request', { service: 's', method: 'GET', path: '/' }, proxied({ status: '200' })],
      ['stack_list_agents', {}, [agent()]],
      ['stack_register_agent', { name: 'reader' }, null],
    ] as const) {
      const r = await call(tool, args, answer);
      expect({ tool, isError: r.isError }).toEqual({ tool, isError: true });
      expectToolError(r, 'INTERNAL_ERROR');
    }
  });
});
