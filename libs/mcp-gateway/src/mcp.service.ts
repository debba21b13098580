/**
 * Answers MCP JSON-RPC messages for an authenticated principal: initialize, ping, tools/list
 * (only the tools its scopes allow) and tools/call (validated, then sent over the bus to the
 * owning service with the principal's signed caller context). Built once per process.
 */
import { Inject, Injectable } from '@nestjs/common';

import { assertValid, describeErrors, validatorFor } from '@stack/bus';
import { DROPOFF_LIMITS, StackError, type ToolDef } from '@stack/contracts';
import { STACK_VERSION, serviceKitToken, type ServiceKit } from '@stack/runtime';

import {
  CallToolRequestSchema,
  InitializeRequestSchema,
  LATEST_PROTOCOL_VERSION,
  RpcErrorCode,
  SUPPORTED_PROTOCOL_VERSIONS,
  rpcError,
  rpcResult,
  toolError,
  type CallToolResult,
  type JSONRPCMessage,
  type RpcId,
  type Tool,
} from './mcp-protocol';
import type { Principal } from './principal';

export const GATEWAY_TOOLS = Symbol.for('stack.mcp-gateway.tools');

/**
 * Tool results are capped at 1 MB (DESIGN.md §5): beyond, a proxied answer's body is cut and the
 * answer marked `truncated` (still the shape its output schema gives); any other result is refused.
 */
export const MAX_TOOL_RESULT_BYTES = 1024 * 1024;

const INSTRUCTIONS =
  'STACK lets you use your team’s connected services (GitHub, Slack, any HTTP API) without holding their credentials: ' +
  'list what is connected, call it through the proxy, mint short-lived passports for other agents, and read the audit log. ' +
  'Errors come back as results with isError and a stable error code.';

/** What the HTTP side knows of the request a message came in: whether its client has gone. */
export interface RequestContext {
  clientGone(): boolean;
}

const STILL_HERE: RequestContext = { clientGone: () => false };

/** A tools/call in progress: its JSON-RPC id (what a cancellation names) and its HTTP request. */
interface ToolCall {
  id: RpcId;
  request: RequestContext;
}

/** How long a cancellation is remembered: past the longest tool call. */
const CANCELLATION_TTL_MS = 120_000;

export interface ToolCallOutcome {
  tool: string;
  outcome: 'success' | 'failure' | 'denied';
  errorCode?: string;
  durationMs: number;
}

@Injectable()
export class McpService {
  private readonly byName: Map<string, ToolDef>;
  private readonly listed: Map<string, Tool>;

  constructor(
    @Inject(serviceKitToken('mcp-gateway')) private readonly kit: ServiceKit,
    @Inject(GATEWAY_TOOLS) tools: readonly ToolDef[],
  ) {
    this.byName = new Map(tools.map((t) => [t.name, t]));
    this.listed = new Map(tools.map((t) => [t.name, describeTool(t)]));
  }

  tool(name: string): ToolDef | undefined {
    return this.byName.get(name);
  }

  /** The answer to one message: a JSON-RPC response object, or null for notifications and responses. */
  async handle(message: JSONRPCMessage, principal: Principal, request: RequestContext = STILL_HERE): Promise<Record<string, unknown> | null> {
    if ('method' in message && message.method === 'notifications/cancelled') {
      await this.rememberCancelled(principal, (message as { params?: { requestId?: unknown } }).params?.requestId);
      return null;
    }
    if (!('method' in message) || !('id' in message)) return null; // notifications and client responses need no answer
    const id = message.id as RpcId;
    switch (message.method) {
      case 'initialize': {
        const parsed = InitializeRequestSchema.safeParse(message);
        if (!parsed.success) return rpcError(id, RpcErrorCode.InvalidParams, 'invalid initialize parameters');
        const asked = parsed.data.params.protocolVersion;
        const protocolVersion = (SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(asked) ? asked : LATEST_PROTOCOL_VERSION;
        return rpcResult(id, {
          protocolVersion,
          capabilities: { tools: { listChanged: false } },
          serverInfo: { name: 'stack', title: 'STACK', version: STACK_VERSION },
          instructions: INSTRUCTIONS,
        });
      }
      case 'ping':
        return rpcResult(id, {});
      case 'tools/list':
        return rpcResult(id, { tools: [...this.listed.values()].filter((t) => this.allowed(principal, t.name)) });
      case 'tools/call': {
        const parsed = CallToolRequestSchema.safeParse(message);
        if (!parsed.success) return rpcError(id, RpcErrorCode.InvalidParams, 'invalid tools/call parameters');
        const { name, arguments: args } = parsed.data.params;
        const tool = this.byName.get(name);
        if (!tool) return rpcError(id, RpcErrorCode.InvalidParams, `unknown tool: ${name}`);
        return rpcResult(id, (await this.callTool(tool, args ?? {}, principal, { id, request })) as unknown as Record<string, unknown>);
      }
      default:
        return rpcError(id, RpcErrorCode.MethodNotFound, `method not found: ${message.method}`);
    }
  }

  allowed(principal: Principal, toolName: string): boolean {
    const tool = this.byName.get(toolName);
    return !!tool && principal.caller.scopes.includes(tool.scope);
  }

  /** The deadline of a long-running tool: the longest wait a service may take, plus a margin. */
  private longRunningTimeoutMs(): number {
    const c = this.kit.config;
    return Math.max(c.busTimeoutMs, c.proxyTimeoutMs ?? 30_000, DROPOFF_LIMITS.maxWaitSeconds * 1000) + 5_000;
  }

  /**
   * A client's `notifications/cancelled`: remembered (in the shared cache, as the call may be
   * waiting on another replica) for the call it names, by this caller. Request ids are the
   * client's own, so two clients of one member may share one: a cancellation then stops the other
   * call's take too, which loses nothing (it can collect again).
   */
  private async rememberCancelled(principal: Principal, requestId: unknown): Promise<void> {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    try {
      await this.kit.cache.set(cancelKey(principal, requestId), '1', { ttlMs: CANCELLATION_TTL_MS });
    } catch (err) {
      this.kit.logger.warn({ err: (err as Error).message }, 'could not remember a cancelled tool call');
    }
  }

  /** Whether the call's client went away or cancelled it. */
  private async cancelled(principal: Principal, call: ToolCall): Promise<boolean> {
    if (call.request.clientGone()) return true;
    if (typeof call.id !== 'string' && typeof call.id !== 'number') return false;
    try {
      return (await this.kit.cache.get(cancelKey(principal, call.id))) !== undefined;
    } catch {
      return false;
    }
  }

  /**
   * A tool that takes something away, asked to wait: the wait first, read-only; then, only if the
   * client still waits, the call itself without the wait. Undefined: the client went or cancelled,
   * and nothing was taken.
   */
  private async waitThenArgs(tool: ToolDef, args: Record<string, unknown>, principal: Principal, call: ToolCall): Promise<Record<string, unknown> | undefined> {
    const first = tool.waitFirst;
    if (!first || typeof args[first.arg] !== 'number' || (args[first.arg] as number) <= 0) return args;
    try {
      await this.kit.bus.request(first.command, args, { caller: principal.caller, timeoutMs: this.longRunningTimeoutMs() });
    } catch {
      // Whatever the wait ran into, the call itself says it (without waiting again).
    }
    if (await this.cancelled(principal, call)) return undefined;
    const rest = { ...args };
    delete rest[first.arg];
    return rest;
  }

  private async callTool(tool: ToolDef, args: Record<string, unknown>, principal: Principal, call: ToolCall): Promise<CallToolResult> {
    const started = performance.now();
    let result: CallToolResult;
    let outcome: ToolCallOutcome['outcome'] = 'success';
    let errorCode: string | undefined;
    try {
      if (!principal.caller.scopes.includes(tool.scope)) throw new StackError('OUT_OF_SCOPE', `${tool.name} needs the scope ${tool.scope}`);
      assertValid(tool.input, args, `arguments of ${tool.name}`);
      const callArgs = await this.waitThenArgs(tool, args, principal, call);
      if (!callArgs) {
        // No one reads this answer; the audit entry says what happened.
        outcome = 'failure';
        errorCode = 'CANCELLED';
        result = toolError(new StackError('INVALID_REQUEST', `${tool.name} was cancelled by the client while it waited: nothing was taken`));
      } else {
        const value = await this.kit.bus.request(tool.command, callArgs, { caller: principal.caller, ...(tool.longRunning ? { timeoutMs: this.longRunningTimeoutMs() } : {}) });
        result = this.toolResult(tool, value);
      }
    } catch (err) {
      const e = err instanceof StackError ? err : new StackError('INTERNAL_ERROR', `${tool.name} failed`);
      if (!(err instanceof StackError)) this.kit.logger.error({ tool: tool.name, err: (err as Error).message }, 'tool call failed unexpectedly');
      outcome = ['UNAUTHORIZED', 'FORBIDDEN', 'OUT_OF_SCOPE', 'CONSTRAINT_VIOLATION', 'SCOPE_ESCALATION', 'PASSPORT_REVOKED', 'PASSPORT_EXPIRED', 'RATE_LIMITED'].includes(e.code) ? 'denied' : 'failure';
      errorCode = e.code;
      result = toolError(e);
    }
    const done: ToolCallOutcome = { tool: tool.name, outcome, errorCode, durationMs: performance.now() - started };
    await this.audit(principal, done);
    return result;
  }

  /**
   * A service's answer as a tool result: the JSON as text and, for clients that check it against
   * the tool's output schema (the SDK's own client does, and throws on a mismatch), the same
   * object as structuredContent. An answer that could not be shown as a conforming result (not an
   * object, over the cap, not the declared shape) becomes a tool error instead, never a
   * structuredContent of some other shape.
   */
  private toolResult(tool: ToolDef, value: unknown): CallToolResult {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.kit.logger.error({ tool: tool.name, type: value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value }, 'a service answered a tool call with something other than an object');
      throw new StackError('INTERNAL_ERROR', `${tool.name} failed`);
    }
    const fitted = fitToolResult(value as Record<string, unknown>);
    if (!fitted) throw new StackError('PAYLOAD_TOO_LARGE', `the result of ${tool.name} is larger than ${MAX_TOOL_RESULT_BYTES / (1024 * 1024)} MB: ask for less (a smaller limit, narrower filters)`, { limit: MAX_TOOL_RESULT_BYTES });
    const validate = validatorFor(tool.output);
    if (!validate(fitted.value)) {
      this.kit.logger.error({ tool: tool.name, errors: describeErrors(validate.errors ?? []) }, 'a service answered a tool call in a shape its output schema does not allow');
      throw new StackError('INTERNAL_ERROR', `${tool.name} failed`);
    }
    return { content: [{ type: 'text', text: fitted.text }], structuredContent: fitted.value };
  }

  /** Every tool call, allowed or refused, is written to the audit log with who, which tool, outcome and duration. */
  async audit(principal: Principal, call: ToolCallOutcome): Promise<void> {
    try {
      await this.kit.audit.record({
        layer: 'gateway',
        action: `tool.${call.tool}`,
        outcome: call.outcome,
        caller: principal.caller,
        error_code: call.errorCode,
        duration_ms: Math.round(call.durationMs * 1000) / 1000,
        target: { service: 'mcp-gateway', method: 'tools/call', path: '/mcp' },
      });
    } catch (err) {
      this.kit.logger.error({ tool: call.tool, err: (err as Error).message }, 'audit record of a tool call failed');
    }
  }
}

function cancelKey(principal: Principal, requestId: string | number): string {
  const c = principal.caller;
  return `mcp:cancelled:${c.operator_id ?? ''}:${c.member_id ?? ''}:${c.agent_id ?? ''}:${c.client_id ?? ''}:${typeof requestId}:${String(requestId).slice(0, 200)}`;
}

/**
 * The result and its JSON text within MAX_TOOL_RESULT_BYTES. A proxied answer (a string `body`
 * with its `body_encoding` and a `truncated` flag) too large is cut to fit, at a base64 quantum
 * when it is base64 and never inside a UTF-16 surrogate pair, and marked `truncated`; anything
 * else too large: undefined.
 */
export function fitToolResult(value: Record<string, unknown>, max = MAX_TOOL_RESULT_BYTES): { value: Record<string, unknown>; text: string } | undefined {
  let text = JSON.stringify(value);
  let bytes = Buffer.byteLength(text);
  if (bytes <= max) return { value, text };
  if (typeof value.body !== 'string' || typeof value.truncated !== 'boolean' || (value.body_encoding !== 'utf8' && value.body_encoding !== 'base64')) return undefined;
  const base64 = value.body_encoding === 'base64';
  let out = value;
  let body = value.body;
  while (bytes > max) {
    if (body.length === 0) return undefined;
    let keep = Math.min(body.length - 1, Math.floor(body.length * Math.min(0.95, max / bytes)));
    if (base64) keep -= keep % 4;
    else if (keep > 0 && /[\uD800-\uDBFF]/.test(body[keep - 1]!)) keep -= 1;
    body = body.slice(0, Math.max(0, keep));
    out = { ...value, body, truncated: true };
    text = JSON.stringify(out);
    bytes = Buffer.byteLength(text);
  }
  return { value: out, text };
}

/** How a tool appears in tools/list: JSON Schemas (TypeBox's own keys stripped), annotations. */
function describeTool(tool: ToolDef): Tool {
  const plain = (schema: unknown) => JSON.parse(JSON.stringify(schema)) as Tool['inputSchema'];
  return {
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: plain(tool.input),
    outputSchema: plain(tool.output) as Tool['outputSchema'],
    annotations: { title: tool.title, ...tool.annotations },
  };
}
