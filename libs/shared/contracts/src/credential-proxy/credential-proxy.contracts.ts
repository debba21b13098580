/**
 * The credential proxy's public shapes (DESIGN.md §3, §5, §7): the proxy request and its answer
 * (REST `POST /v1/proxy`, the `stack_proxy_request` tool and the bus command the MCP gateway
 * uses) and what connections and services look like to callers.
 * Field names are wire names: never rename one.
 */
import { Type, type Static } from '@sinclair/typebox';

import { defineCommand } from '../bus/definitions';

// Constraints `{path, op, value}` are the passport's (passport/passport-claims.ts); the proxy evaluates them.

export const PROXY_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

export const ProxyRequestSchema = Type.Object({
  service: Type.String({ minLength: 1, maxLength: 128, description: 'A connection id (scon_…), or a catalog id when the caller can use exactly one connection of it.' }),
  method: Type.Union(PROXY_METHODS.map((m) => Type.Literal(m))),
  url: Type.Optional(Type.String({ maxLength: 8192, description: 'Absolute URL; its host must be one of the connection’s allowed hosts.' })),
  path: Type.Optional(Type.String({ maxLength: 8192, description: 'Path relative to the service’s base URL.' })),
  query: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]))),
  headers: Type.Optional(Type.Record(Type.String(), Type.String())),
  body: Type.Optional(Type.Unknown({ description: 'JSON value, or a string sent as it is.' })),
  passport_token: Type.Optional(Type.String({ maxLength: 16384 })),
  idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
});
export type ProxyRequest = Static<typeof ProxyRequestSchema>;

export const ProxyResponseSchema = Type.Object({
  status: Type.Integer(),
  headers: Type.Record(Type.String(), Type.String()),
  /** UTF-8 text of the upstream body (base64 when `body_encoding` says so), credential scrubbed. */
  body: Type.String(),
  body_encoding: Type.Union([Type.Literal('utf8'), Type.Literal('base64')]),
  truncated: Type.Boolean(),
  connection_id: Type.String(),
  duration_ms: Type.Number(),
  /** True when this is the stored outcome of an earlier call with the same idempotency key. */
  replayed: Type.Optional(Type.Boolean()),
});
export type ProxyResponse = Static<typeof ProxyResponseSchema>;

/** Largest tool or bus result body (DESIGN.md §5, §8): bigger upstream answers are cut and flagged. */
export const PROXY_TOOL_RESULT_MAX_BYTES = 1024 * 1024;
/** Largest upstream answer over REST: bigger ones are refused with PAYLOAD_TOO_LARGE. */
export const PROXY_REST_RESPONSE_MAX_BYTES = 10 * 1024 * 1024;

/** A connection as every API shows it: never its secret. */
export const ConnectionViewSchema = Type.Object({
  id: Type.String(),
  service_id: Type.String(),
  name: Type.String(),
  kind: Type.Union([Type.Literal('api_key'), Type.Literal('basic'), Type.Literal('oauth2')]),
  status: Type.Union([Type.Literal('active'), Type.Literal('needs_reauth')]),
  base_url: Type.Union([Type.String(), Type.Null()]),
  expires_at: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  verified_at: Type.Union([Type.String(), Type.Null()]),
});
export type ConnectionView = Static<typeof ConnectionViewSchema>;

export const ServiceListingSchema = Type.Object({
  items: Type.Array(
    Type.Object({
      service_id: Type.String(),
      name: Type.String(),
      base_url: Type.String(),
      auth: Type.Object({ type: Type.Union([Type.Literal('bearer'), Type.Literal('header'), Type.Literal('query'), Type.Literal('basic')]), name: Type.Optional(Type.String()) }),
      allowed_hosts: Type.Array(Type.String()),
      scopes: Type.Array(Type.String()),
      builtin: Type.Boolean(),
      oauth: Type.Boolean(),
      connections: Type.Array(ConnectionViewSchema),
    }),
  ),
});

export const ConnectLinkSchema = Type.Object({
  url: Type.String({ description: 'Open in a browser to paste the secret; valid 15 minutes, once.' }),
  expires_at: Type.String(),
  service_id: Type.String(),
  name: Type.String(),
});

export const CredentialProxyCommands = {
  listServices: defineCommand({
    service: 'credential-proxy',
    name: 'list_services',
    description: 'The catalog (built-in and custom services) with the caller operator’s connections (stack_list_services).',
    request: Type.Object({}),
    response: ServiceListingSchema,
  }),
  connectService: defineCommand({
    service: 'credential-proxy',
    name: 'connect_service',
    description: 'A link the human opens to connect a service; the secret never passes through the model (stack_connect_service).',
    request: Type.Object({
      service_id: Type.String({ minLength: 1, maxLength: 64 }),
      name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      base_url: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: "The connection's own base URL: required where the service has no one host (Jira Cloud: the team's site, e.g. https://acme.atlassian.net)." })),
    }),
    response: ConnectLinkSchema,
  }),
  proxyRequest: defineCommand({
    service: 'credential-proxy',
    name: 'proxy_request',
    description: 'Makes an authenticated call to a connected upstream service for the signed caller (stack_proxy_request). The result body is capped at 1 MB and marked truncated.',
    request: ProxyRequestSchema,
    response: ProxyResponseSchema,
  }),
} as const;
