/**
 * The MCP JSON-RPC methods STACK's gateway serves, answered by one dispatcher built once per
 * process (the SDK's stateless transport would need a new server per request, ~7 ms a call).
 * Messages are validated with the SDK's own schemas; the SDK's client is what the tests use.
 */
import {
  CallToolRequestSchema,
  ErrorCode as RpcErrorCode,
  InitializeRequestSchema,
  JSONRPCMessageSchema,
  type CallToolResult,
  type JSONRPCMessage,
  type JSONRPCResponse,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';

import type { StackError } from '@stack/contracts';

/** Revisions this gateway speaks. A request without the header is 2025-03-26, as the spec says. */
export const SUPPORTED_PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const;
export const LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0];
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

export { CallToolRequestSchema, InitializeRequestSchema, JSONRPCMessageSchema, RpcErrorCode };
export type { CallToolResult, JSONRPCMessage, JSONRPCResponse, Tool };

export type RpcId = string | number;

export function rpcResult(id: RpcId, result: Record<string, unknown>): JSONRPCResponse {
  return { jsonrpc: '2.0', id, result } as JSONRPCResponse;
}

export function rpcError(id: RpcId | null, code: number, message: string, data?: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}

/**
 * A tool error: the STACK error envelope as the result's text, `isError: true` (never a
 * protocol failure). No structuredContent: clients check that against the tool's output
 * schema, which describes success.
 */
export function toolError(err: StackError): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: JSON.stringify({ error: err.toBody() }) }] };
}
