/**
 * A tool result over the 1 MB cap (DESIGN.md §5) still conforms to the tool's output schema: a
 * proxied answer is cut and marked truncated; anything else is a tool error. (A bus reply stays
 * under 900 KB, so this is reached only by answers that grow on the way, or a larger bus limit.)
 */
import { validatorFor } from '@stack/bus';
import { MCP_TOOLS, ProxyResponseSchema, type ToolDef } from '@stack/contracts';
import type { ServiceKit } from '@stack/runtime';

import { MAX_TOOL_RESULT_BYTES, McpService, fitToolResult } from './mcp.service';
import type { Principal } from './principal';

const proxied = (body: string, body_encoding: 'utf8' | 'base64') => ({ status: 200, headers: { 'content-type': 'text/plain' }, body, body_encoding, truncated: false, connection_id: 'scon_1', duration_ms: 1.5 });
const conformsToProxy = (v: unknown) => validatorFor(ProxyResponseSchema)(v);

describe('fitToolResult', () => {
  it('leaves a result under the cap as it is', () => {
    const v = proxied('hello', 'utf8');
    expect(fitToolResult(v)).toEqual({ value: v, text: JSON.stringify(v) });
  });

  it('cuts a proxied body whose JSON (escapes included) is over the cap, marks it truncated, and keeps its schema', () => {
    // Quotes double in JSON: 700 KB of them spell 1.4 MB.
    const fitted = fitToolResult(proxied('"'.repeat(700_000), 'utf8'))!;
    expect(Buffer.byteLength(fitted.text)).toBeLessThanOrEqual(MAX_TOOL_RESULT_BYTES);
    expect(JSON.parse(fitted.text)).toEqual(fitted.value);
    expect(fitted.value).toMatchObject({ truncated: true, status: 200, body_encoding: 'utf8' });
    expect((fitted.value.body as string).length).toBeGreaterThan(400_000);
    expect(conformsToProxy(fitted.value)).toBe(true);
  });

  it('cuts a base64 body at a whole quantum, and never inside a surrogate pair', () => {
    const b64 = fitToolResult(proxied('QUJD'.repeat(300_000), 'base64'), 1000)!;
    expect((b64.value.body as string).length % 4).toBe(0);
    expect(Buffer.from(b64.value.body as string, 'base64').toString()).toMatch(/^(ABC)+$/);
    const emoji = fitToolResult(proxied('😀'.repeat(1000), 'utf8'), 1000)!;
    expect(emoji.value.body as string).toMatch(/^(😀)+$/u);
    expect(Buffer.byteLength(emoji.text)).toBeLessThanOrEqual(1000);
  });

  it('gives up on anything else over the cap', () => {
    expect(fitToolResult({ items: ['x'.repeat(MAX_TOOL_RESULT_BYTES)] })).toBeUndefined();
  });
});

describe('McpService tool results', () => {
  const principal: Principal = { credential: 'oauth', caller: { issuer: 'mcp-gateway', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:services', 'stack:passports', 'stack:audit'] }, rateKeys: [] };
  const serviceAnswering = (value: unknown) => {
    const kit = {
      config: { busTimeoutMs: 5000 },
      bus: { request: jest.fn(async () => value) },
      audit: { record: jest.fn(async () => undefined) },
      logger: { error: jest.fn(), warn: jest.fn() },
      cache: { get: jest.fn(), set: jest.fn() },
    } as unknown as ServiceKit;
    return new McpService(kit, MCP_TOOLS as ToolDef[]);
  };
  const callTool = async (svc: McpService, name: string, args: Record<string, unknown>) =>
    ((await svc.handle({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }, principal)) as { result: { isError?: boolean; structuredContent?: unknown; content: { text: string }[] } }).result;

  it('answers an over-cap proxied body with a cut body that conforms to stack_proxy_request’s output schema', async () => {
    const r = await callTool(serviceAnswering(proxied('"'.repeat(700_000), 'utf8')), 'stack_proxy_request', { service: 'scon_1', method: 'GET', path: '/' });
    expect(r.isError).toBeUndefined();
    expect(conformsToProxy(r.structuredContent)).toBe(true);
    expect(r.structuredContent).toMatchObject({ truncated: true });
    expect(JSON.parse(r.content[0]!.text)).toEqual(r.structuredContent);
  });

  it('answers any other over-cap result with PAYLOAD_TOO_LARGE as a tool error, no structuredContent', async () => {
    const agents = Array.from({ length: 6000 }, (_, i) => ({ id: `agt_${i}`, operator_id: 'op_1', name: `agent-${i}`, description: 'd'.repeat(150), created_at: new Date().toISOString(), updated_at: new Date().toISOString() }));
    const r = await callTool(serviceAnswering({ agents }), 'stack_list_agents', {});
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toBeUndefined();
    expect(JSON.parse(r.content[0]!.text)).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
  });
});
