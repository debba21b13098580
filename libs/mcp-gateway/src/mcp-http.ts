/**
 * The HTTP side of /mcp (Streamable HTTP, revisions 2025-06-18 and 2025-11-25): everything that
 * is decided before any JSON-RPC dispatch — Origin and Host (DNS-rebinding protection),
 * MCP-Protocol-Version, body size and JSON, the bearer token (401 with the protected-resource
 * challenge), rate limits and what a caller may have in flight, the scope a tools/call needs
 * (403 insufficient_scope, a step-up).
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

/**
 * What one member's (and one agent's) requests may hold on a replica at once, in request bytes.
 * The token bucket counts requests as they start, not how long they stay: a long-running tool
 * holds its request for up to a minute, and 850 KB of tiny JSON values parses to ~19 MB, so the
 * bucket alone let one caller hold gigabytes (~80 MB at most now). Each request counts its
 * declared Content-Length (the 1 MB cap when it declares none), at least 32 KB: at most 4 of the
 * largest at once, or 128 small ones.
 */
export const MCP_IN_FLIGHT_BYTES = 4 * 1024 * 1024;
const MIN_REQUEST_WEIGHT = 32 * 1024;

/** What a request counts against the in-flight budget, known before its body is read. */
export function requestWeight(req: IncomingMessage): number {
  const declared = Number(req.headers['content-length'] ?? MAX_MCP_BODY_BYTES);
  return Math.min(MAX_MCP_BODY_BYTES, Math.max(MIN_REQUEST_WEIGHT, Number.isFinite(declared) ? declared : MAX_MCP_BODY_BYTES));
}

/** The request bytes in flight per rate key on this replica (memory is per replica, so is the budget). */
export class InFlightBudget {
  private readonly held = new Map<string, number>();

  constructor(private readonly budget = MCP_IN_FLIGHT_BYTES) {}

  /** Reserves `bytes` under every key and returns its release, or undefined (nothing reserved) when a key would go over. */
  take(keys: readonly string[], bytes: number): (() => void) | undefined {
    for (const k of keys) if ((this.held.get(k) ?? 0) + bytes > this.budget) return undefined;
    for (const k of keys) this.held.set(k, (this.held.get(k) ?? 0) + bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of keys) {
        const left = (this.held.get(k) ?? 0) - bytes;
        if (left > 0) this.held.set(k, left);
        else this.held.delete(k);
      }
    };
  }
}

/** A 429 like the rate limit's: the caller has too much in flight here. */
export function tooMuchInFlight(): HttpRefusal {
  return {
    status: 429,
    headers: { 'Retry-After': '1' },
    body: { error: { code: 'RATE_LIMITED', message: 'too many requests in flight; retry when one has been answered', details: { retry_after_s: 1 } } },
  };
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
