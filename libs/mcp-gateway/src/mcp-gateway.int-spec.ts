/**
 * The gateway's HTTP contract, driven by the MCP SDK's own client and by raw HTTP, on the
 * real NATS, Postgres and Redis. Tokens here come from a test verifier: the real credential
 * types (OAuth access tokens, API keys, passports) have their own verifiers and suites.
 */
import { request } from 'node:http';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import type { BusConnection } from '@stack/bus';
import { Type } from '@sinclair/typebox';

import { SYSTEM_COMMANDS, StackError, defineCommand, defineTool, type ToolDef } from '@stack/contracts';
import type { RunningStack, ServiceDefinition } from '@stack/runtime';

import { MCP_IN_FLIGHT_BYTES } from './mcp-http';
import { McpGatewayModule } from './mcp-gateway.module';
import { startGatewayWithStandIns } from './testing/gateway-with-stand-ins';
import type { Principal, TokenVerifier } from './principal';

const pingTool = defineTool({
  name: 'stack_test_ping',
  title: 'Ping the audit service',
  description: 'Test tool: answers with the audit instance.',
  scope: 'stack:audit',
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  command: SYSTEM_COMMANDS.audit.ping,
});
const peersTool = defineTool({
  name: 'stack_test_peers',
  title: 'Ping peers',
  description: 'Test tool needing the admin scope.',
  scope: 'stack:admin',
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  command: SYSTEM_COMMANDS.audit.pingPeers,
});
/** A long-running tool: its service (a stand-in passport, below) answers when the test lets it. */
const waitTool = defineTool({
  name: 'stack_test_wait',
  title: 'Wait',
  description: 'Test tool: answers once the test releases it.',
  scope: 'stack:dropoffs',
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  command: SYSTEM_COMMANDS.passport.ping,
  longRunning: true,
});

/** A tool that takes something away, as stack_collect does: its wait is done first by a read-only peek. */
const boxRequest = Type.Object({ box: Type.String(), wait_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 60 })) });
const peekCommand = defineCommand({ service: 'passport', name: 'test_peek', description: 'Test: waits for the box to fill, takes nothing.', request: boxRequest, response: Type.Object({ ready: Type.Boolean() }) });
const takeCommand = defineCommand({ service: 'passport', name: 'test_take', description: 'Test: takes what is in the box.', request: boxRequest, response: Type.Object({ taken: Type.String() }) });
const takeTool = defineTool({
  name: 'stack_test_take',
  title: 'Take',
  description: 'Test tool: takes the box, waiting for it first.',
  scope: 'stack:dropoffs',
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  command: takeCommand,
  waitFirst: { command: peekCommand, arg: 'wait_seconds' },
  longRunning: true,
});

/** `test|<member>|<scope,scope>`; `expired` fails as an expired token would. */
const testVerifier: TokenVerifier = {
  name: 'test',
  accepts: (t) => t.startsWith('test|') || t === 'expired',
  async verify(token): Promise<Principal> {
    if (token === 'expired') throw new StackError('UNAUTHORIZED', 'token has expired');
    const [, member, scopes] = token.split('|');
    return {
      credential: 'oauth',
      caller: { issuer: 'mcp-gateway', kind: 'member', operator_id: 'op_test', member_id: member, scopes: (scopes ?? '').split(',').filter(Boolean) },
      rateKeys: [`member:${member}`],
    };
  },
};

const gateway: ServiceDefinition = {
  service: 'mcp-gateway',
  module: McpGatewayModule.register({ tools: [pingTool, peersTool, waitTool, takeTool] as ToolDef[], verifiers: () => [testVerifier] }),
  entities: [],
  migrations: [],
  rawBodyPaths: ['/mcp'],
};
const audit: ServiceDefinition = { service: 'audit', module: class AuditTestModule {}, entities: [], migrations: [] };

describe('MCP gateway over HTTP', () => {
  let stack: RunningStack;
  let stop: (() => Promise<void>) | undefined;
  let mcpUrl: string;
  let standIn: BusConnection;
  /** The stand-in passport's waiting calls, and what lets them answer. */
  const waiting = { arrived: 0, release: (): void => undefined, gate: Promise.resolve() };
  /** The stand-in's box: peeks wait at the gate; takes are recorded. */
  const box = { peeks: 0, takes: [] as unknown[], release: (): void => undefined, gate: Promise.resolve() };

  beforeAll(async () => {
    ({ stack, standIn, stop } = await startGatewayWithStandIns({ available: [gateway, audit], name: 'gw', rateLimit: '40:0.5', logLevel: 'warn', standInId: 'stand-in-passport' }));
    // The public URL is what clients use; point it at this process (config is read once at start).
    mcpUrl = `${stack.url}/mcp`;
    standIn.forService('passport').handle(SYSTEM_COMMANDS.passport.ping, async () => {
      waiting.arrived++;
      await waiting.gate;
      return { service: 'passport' as const, instance: 'stand-in', pid: process.pid, at: new Date().toISOString() };
    });
    standIn.forService('passport').handle(peekCommand, async () => {
      box.peeks++;
      await box.gate;
      return { ready: true };
    });
    standIn.forService('passport').handle(takeCommand, async (payload) => {
      box.takes.push(payload);
      return { taken: payload.box };
    });
    await standIn.flush();
  });

  afterAll(async () => {
    await stop?.();
  });

  const client = async (token: string) => {
    const c = new Client({ name: 'gateway-test', version: '1.0.0' });
    await c.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    return c;
  };

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: 'Bearer test|mem_raw|stack:audit', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('lets the SDK client initialize, list the tools its scopes allow, and call one over the bus', async () => {
    const c = await client('test|mem_1|stack:audit');
    try {
      expect(c.getServerVersion()?.name).toBe('stack');
      const { tools } = await c.listTools();
      expect(tools.map((t) => t.name)).toEqual(['stack_test_ping']);
      expect(tools[0]!.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false, idempotentHint: true });
      expect(tools[0]!.inputSchema.type).toBe('object');
      const result = await c.callTool({ name: 'stack_test_ping', arguments: { from: 'test' } });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ service: 'audit', pid: process.pid });
    } finally {
      await c.close();
    }
  });

  it('answers 401 with the protected-resource challenge when there is no token, or a bad one', async () => {
    for (const auth of [undefined, 'Bearer expired', 'Bearer nonsense', 'Basic abc']) {
      const res = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) });
      expect({ auth, status: res.status }).toEqual({ auth, status: 401 });
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer resource_metadata="http:\/\/.+\/\.well-known\/oauth-protected-resource\/mcp", scope="stack:services /);
    }
  });

  it('serves the protected-resource metadata at both well-known paths', async () => {
    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const res = await fetch(`${stack.url}${path}`);
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { resource: string; authorization_servers: string[]; scopes_supported: string[] };
      expect(doc.resource).toBe(`${stack.config.publicUrl}/mcp`);
      expect(doc.authorization_servers).toEqual([stack.config.publicUrl]);
      expect(doc.scopes_supported).toContain('stack:services');
    }
  });

  /** fetch cannot set Host: plain node:http can, as a rebound DNS name would make a browser do. */
  const rawStatus = (headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
      const req = request(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer test|mem_raw|stack:audit', 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(body);
    });

  it('refuses a foreign Origin and a rebound Host with 403', async () => {
    expect((await post({ jsonrpc: '2.0', id: 1, method: 'ping' }, { origin: 'http://evil.example' })).status).toBe(403);
    expect(await rawStatus({ host: 'evil.example:8080' })).toBe(403);
    expect(await rawStatus({ host: new URL(mcpUrl).host })).toBe(200);
    expect((await post({ jsonrpc: '2.0', id: 1, method: 'ping' }, { origin: 'http://localhost:8080' })).status).toBe(200);
  });

  it('refuses an unsupported MCP-Protocol-Version with 400 and accepts a missing one', async () => {
    expect((await post({ jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-protocol-version': '1999-01-01' })).status).toBe(400);
    expect((await post({ jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-protocol-version': '2025-06-18' })).status).toBe(200);
    expect((await post({ jsonrpc: '2.0', id: 1, method: 'ping' })).status).toBe(200);
  });

  it('asks for a step-up (403 insufficient_scope) when a tool needs a scope the token lacks', async () => {
    const res = await post({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'stack_test_peers', arguments: {} } });
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toMatch(/error="insufficient_scope", scope="stack:admin"/);
  });

  it('answers malformed JSON-RPC and oversized bodies at the HTTP level', async () => {
    const notJson = await post('{"jsonrpc":');
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: { code: number } }).error.code).toBe(-32700);
    const notRpc = await post({ hello: 'world' });
    expect(notRpc.status).toBe(400);
    const big = await post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'stack_test_ping', arguments: { from: 'x'.repeat(1_100_000) } } });
    expect(big.status).toBe(413);
    // Nested deeper than any tool needs: refused at the HTTP level, not an internal error after validation.
    const deep = await post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"stack_test_ping","arguments":{"from":"x","pad":${'['.repeat(100_000)}${']'.repeat(100_000)}}}}`);
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as { error: { message: string } }).error.message).toMatch(/nested deeper than 128 levels/);
    const fine = await post({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'stack_test_ping', arguments: { from: 'x' } } });
    expect(fine.status).toBe(200);
  });

  it('turns handler errors and bad arguments into tool results with isError, never protocol failures', async () => {
    const res = await post({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'stack_test_ping', arguments: { from: 42 } } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { result: { isError: boolean; content: { type: string; text: string }[] } };
    expect(body.result.isError).toBe(true);
    expect((JSON.parse(body.result.content[0]!.text) as { error: { code: string } }).error.code).toBe('INVALID_REQUEST');
  });

  it('answers GET and DELETE with 405 and notifications with 202', async () => {
    expect((await fetch(mcpUrl, { headers: { authorization: 'Bearer test|m|stack:audit' } })).status).toBe(405);
    expect((await fetch(mcpUrl, { method: 'DELETE', headers: { authorization: 'Bearer test|m|stack:audit' } })).status).toBe(405);
    expect((await post({ jsonrpc: '2.0', method: 'notifications/initialized' })).status).toBe(202);
  });

  it('rate-limits a member with 429 and Retry-After', async () => {
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 45; i++) {
      const res = await post({ jsonrpc: '2.0', id: i, method: 'ping' }, { authorization: 'Bearer test|mem_rate|stack:audit' });
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get('retry-after');
      await res.arrayBuffer();
    }
    expect(statuses.slice(0, 40).every((s) => s === 200)).toBe(true);
    expect(statuses).toContain(429);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  });

  it('counts a refused step-up against the rate limit, so refusals cannot flood the audit log', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 45; i++) {
      const res = await post({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'stack_test_peers', arguments: {} } }, { authorization: 'Bearer test|mem_stepup|stack:audit' });
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    // Each 403 writes an audit entry; past the bucket the caller gets 429 and nothing is written.
    expect(statuses.slice(0, 40).every((s) => s === 403)).toBe(true);
    expect(statuses.slice(40)).toEqual([429, 429, 429, 429, 429]);
  });

  /** Settles with the response's status, or 'held' when none came within `ms`. */
  const statusWithin = async (res: Promise<Response>, ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([res.then((r) => r.status), new Promise<'held'>((resolve) => (timer = setTimeout(() => resolve('held'), ms)))]);
    } finally {
      clearTimeout(timer);
    }
  };
  /** A 429 for what is in flight (not the token bucket's). */
  const refusedInFlight = async (res: Response) => res.status === 429 && res.headers.get('retry-after') === '1' && /in flight/.test(((await res.json()) as { error: { message: string } }).error.message);

  it('bounds the request bytes a member holds in flight, and frees them as calls are answered', async () => {
    waiting.arrived = 0;
    waiting.gate = new Promise<void>((resolve) => (waiting.release = resolve));
    const call = (member: string) => post(large, { authorization: `Bearer test|${member}|stack:dropoffs` });
    // About 850 KB of arguments (under the bus's 900 KB), held by a long-running tool until released.
    const large = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'stack_test_wait', arguments: { from: 'x'.repeat(850_000) } } });
    const fit = Math.floor(MCP_IN_FLIGHT_BYTES / Buffer.byteLength(large));
    const held = Array.from({ length: fit }, () => call('mem_busy'));
    try {
      await waitFor(() => waiting.arrived === fit);
      const over = call('mem_busy');
      expect(await statusWithin(over, 2000)).toBe(429);
      expect(await refusedInFlight(await over)).toBe(true);
      // Another member is counted on their own.
      const other = call('mem_other');
      await waitFor(() => waiting.arrived === fit + 1);
      waiting.release();
      expect(await Promise.all([...held, other].map((p) => p.then((r) => r.status)))).toEqual(Array(fit + 1).fill(200));
      expect(await statusWithin(call('mem_busy'), 5000)).toBe(200);
    } finally {
      waiting.release();
    }
  });

  describe('a tool that takes something away (as stack_collect takes a payload)', () => {
    const takeCall = (id: number, wait: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'stack_test_take', arguments: { box: `box-${id}`, wait_seconds: wait } } });
    const auth = { authorization: 'Bearer test|mem_taker|stack:dropoffs' };
    const hold = () => {
      box.peeks = 0;
      box.gate = new Promise<void>((resolve) => (box.release = resolve));
    };

    it('waits first with the read-only command, then takes without waiting', async () => {
      box.gate = Promise.resolve();
      box.peeks = 0;
      const before = box.takes.length;
      const res = await post(takeCall(1, 5), auth);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { result: { structuredContent: unknown } }).result.structuredContent).toEqual({ taken: 'box-1' });
      expect(box.peeks).toBe(1);
      expect(box.takes.slice(before)).toEqual([{ box: 'box-1' }]);
      // Without a wait there is nothing to do first.
      expect((await post(takeCall(2, 0), auth)).status).toBe(200);
      expect(box.peeks).toBe(1);
      expect(box.takes.slice(before)).toEqual([{ box: 'box-1' }, { box: 'box-2', wait_seconds: 0 }]);
    });

    it('takes nothing when the client cancels during the wait (notifications/cancelled, on any replica)', async () => {
      hold();
      const before = box.takes.length;
      const pending = post(takeCall(77, 30), auth);
      try {
        await waitFor(() => box.peeks === 1);
        expect((await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 77, reason: 'user pressed Esc' } }, auth)).status).toBe(202);
      } finally {
        box.release();
      }
      const answer = (await (await pending).json()) as { result: { isError?: boolean; content: { text: string }[] } };
      expect(answer.result.isError).toBe(true);
      expect(answer.result.content[0]!.text).toContain('cancelled');
      expect(box.takes.length).toBe(before);
      // Another member's cancellation of the same request id cancels nothing of this one.
      hold();
      const other = post(takeCall(78, 30), auth);
      try {
        await waitFor(() => box.peeks === 1);
        await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 78 } }, { authorization: 'Bearer test|mem_other_taker|stack:dropoffs' });
      } finally {
        box.release();
      }
      expect((await other).status).toBe(200);
      expect(box.takes.slice(before)).toEqual([{ box: 'box-78' }]);
    });

    it('takes nothing when the client goes away during the wait', async () => {
      hold();
      const before = box.takes.length;
      const body = JSON.stringify(takeCall(90, 30));
      const req = request(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'content-length': String(Buffer.byteLength(body)), ...auth } });
      req.on('error', () => undefined);
      req.end(body);
      try {
        await waitFor(() => box.peeks === 1);
        req.destroy();
        // The gateway sees the connection close.
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        box.release();
      }
      // A call that went on would take within milliseconds of the release; a ping after it has been answered shows the gateway is past it.
      await new Promise((r) => setTimeout(r, 300));
      expect((await post({ jsonrpc: '2.0', id: 91, method: 'ping' }, auth)).status).toBe(200);
      expect(box.takes.length).toBe(before);
    });
  });

  it('counts a body still being uploaded as in flight, and frees it when the upload is abandoned', async () => {
    // Each declares the 1 MB cap and sends a little of it: together they fill the budget.
    const uploads = Array.from({ length: MCP_IN_FLIGHT_BYTES / (1024 * 1024) }, () => {
      const req = request(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer test|mem_upload|stack:audit', 'content-length': String(1024 * 1024) } });
      req.on('error', () => undefined);
      req.write('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"');
      return req;
    });
    const ping = () => post({ jsonrpc: '2.0', id: 1, method: 'ping' }, { authorization: 'Bearer test|mem_upload|stack:audit' });
    try {
      await waitFor(async () => refusedInFlight(await ping()));
    } finally {
      for (const u of uploads) u.destroy();
    }
    await waitFor(async () => (await ping()).status === 200);
  });
});

/** Polls until `check` holds (10 s at most). */
async function waitFor(check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s');
    await new Promise((r) => setTimeout(r, 25));
  }
}
