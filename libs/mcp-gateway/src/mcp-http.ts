/**
 * The HTTP side of /mcp (Streamable HTTP, revisions 2025-06-18 and 2025-11-25): everything that
 * is decided before any JSON-RPC dispatch — Origin and Host (DNS-rebinding protection),
 * MCP-Protocol-Version, body size and JSON, the bearer token (401 with the protected-resource
 * challenge), the scope a tools/call needs (403 insufficient_scope, a step-up), rate limits.
 */
import type { IncomingMessage } from 'node:http';

import type { StackConfig } from '@stack/config';
import { DEFAULT_SCOPES, StackError } from '@stack/contracts';
import { readRawBody } from '@stack/runtime';

import { DEFAULT_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from './mcp-protocol';

export const MAX_MCP_BODY_BYTES = 1024 * 1024;

export interface HttpRefusal {
  status: number;
  headers?: Record<string, string>;
  body: Record<string, unknown>;
}

export function resourceMetadataUrl(config: StackConfig): string {
  return `${config.publicUrl}/.well-known/oauth-protected-resource/mcp`;
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function hostOnly(host: string): string {
  return host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : (host.split(':')[0] ?? host);
}

/**
 * Browsers send Origin; a page on another site must not drive a member's MCP session, and a
 * rebound DNS name must not reach a local STACK. Allowed: the public origin, and loopback
 * origins when STACK itself is served on loopback.
 */
export function checkOriginAndHost(req: IncomingMessage, config: StackConfig): HttpRefusal | undefined {
  const publicUrl = new URL(config.publicUrl);
  const publicIsLoopback = LOOPBACK_HOSTS.has(publicUrl.hostname) || publicUrl.hostname === '[::1]';
  const host = req.headers.host;
  if (host) {
    const h = hostOnly(host.toLowerCase());
    if (host.toLowerCase() !== publicUrl.host && !LOOPBACK_HOSTS.has(h)) {
      return forbidden(`Host ${host} is not this STACK (${publicUrl.host})`);
    }
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let ok = false;
    try {
      const o = new URL(origin);
      ok = o.origin === publicUrl.origin || (publicIsLoopback && LOOPBACK_HOSTS.has(o.hostname === '::1' ? '[::1]' : o.hostname));
    } catch {
      ok = false;
    }
    if (!ok) return forbidden(`Origin ${origin} may not use this MCP endpoint`);
  }
  return undefined;
}

function forbidden(message: string): HttpRefusal {
  return { status: 403, body: { error: { code: 'FORBIDDEN', message } } };
}

/** Absent means 2025-03-26 (the spec's rule); an unsupported value is a 400. */
export function checkProtocolVersion(req: IncomingMessage): HttpRefusal | string {
  const v = req.headers['mcp-protocol-version'];
  const version = Array.isArray(v) ? v[0] : v;
  if (version === undefined) return DEFAULT_PROTOCOL_VERSION;
  if (!(SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(version)) {
    return {
      status: 400,
      body: { jsonrpc: '2.0', id: null, error: { code: -32000, message: `Bad Request: unsupported MCP-Protocol-Version ${version} (supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})` } },
    };
  }
  return version;
}

/**
 * The challenge of a request without a valid token (RFC 6750 + RFC 9728). Its scope lists
 * offline_access too: clients ask for the scope it names, and without offline_access they get
 * no refresh token.
 */
export function unauthorized(config: StackConfig, err?: StackError): HttpRefusal {
  const challenge = `Bearer resource_metadata="${resourceMetadataUrl(config)}", scope="${[...DEFAULT_SCOPES, 'offline_access'].join(' ')}"${err ? `, error="invalid_token", error_description="${err.message.replace(/"/g, "'")}"` : ''}`;
  const e = err ?? new StackError('UNAUTHORIZED', 'a bearer token is required');
  return { status: e.status === 503 ? 503 : 401, headers: e.status === 503 ? {} : { 'WWW-Authenticate': challenge }, body: { error: e.toBody() } };
}

/** A tool needs a scope the token lacks: ask the client to step up (RFC 6750 insufficient_scope). */
export function insufficientScope(config: StackConfig, scope: string, tool: string): HttpRefusal {
  return {
    status: 403,
    headers: { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${resourceMetadataUrl(config)}", error_description="${tool} needs ${scope}"` },
    body: { error: { code: 'OUT_OF_SCOPE', message: `${tool} needs the scope ${scope}`, details: { scope, tool } } },
  };
}

/** Reads the body up to the limit; undefined when it is larger. */
export async function readBody(req: IncomingMessage, limit = MAX_MCP_BODY_BYTES): Promise<Buffer | undefined> {
  try {
    return await readRawBody(req, limit);
  } catch (err) {
    if (err instanceof StackError && err.code === 'PAYLOAD_TOO_LARGE') return undefined;
    throw err;
  }
}

/** How deep a JSON-RPC message may nest: deeper ones are refused before anything walks them recursively. */
export const MAX_MCP_JSON_DEPTH = 128;

/** True when `value` nests arrays or objects deeper than `max` (walked without recursion). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
  while (stack.length) {
    const { v, depth } = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) {
      if (child !== null && typeof child === 'object') stack.push({ v: child, depth: depth + 1 });
    }
  }
  return false;
}
