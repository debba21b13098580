/**
 * Commands every service answers: `ping` (am I reachable over the bus?) and `ping_peers`
 * (can I reach every other service?). Used by health checks and the end-to-end tests.
 */
import { Type } from '@sinclair/typebox';

import { SERVICE_NAMES, type ServiceName } from '../services';
import { defineCommand, type CommandDef } from './definitions';

const ServiceNameSchema = Type.Union(SERVICE_NAMES.map((s) => Type.Literal(s)));

export const PingRequestSchema = Type.Object({
  from: Type.Optional(Type.String({ description: 'Who is asking, for logs.' })),
});

export const PingResponseSchema = Type.Object({
  service: ServiceNameSchema,
  instance: Type.String({ description: 'Instance id of the process that answered.' }),
  pid: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
});

export const PingPeersRequestSchema = Type.Object({
  timeout_ms: Type.Optional(Type.Integer({ minimum: 10, maximum: 30000 })),
});

export const PingPeersResponseSchema = Type.Object({
  service: ServiceNameSchema,
  instance: Type.String(),
  peers: Type.Array(
    Type.Object({
      service: ServiceNameSchema,
      ok: Type.Boolean(),
      instance: Type.Optional(Type.String()),
      error: Type.Optional(Type.String()),
      rtt_ms: Type.Number(),
    }),
  ),
});

function pingCommands(service: ServiceName) {
  return {
    ping: defineCommand({
      service,
      name: 'ping',
      description: `Answers with the ${service} instance that received it.`,
      request: PingRequestSchema,
      response: PingResponseSchema,
    }),
    pingPeers: defineCommand({
      service,
      name: 'ping_peers',
      description: `Makes ${service} ping every other service over the bus and report what answered.`,
      request: PingPeersRequestSchema,
      response: PingPeersResponseSchema,
    }),
  };
}

export type PingCommand = CommandDef<typeof PingRequestSchema, typeof PingResponseSchema>;
export type PingPeersCommand = CommandDef<typeof PingPeersRequestSchema, typeof PingPeersResponseSchema>;

export const SYSTEM_COMMANDS: Record<ServiceName, { ping: PingCommand; pingPeers: PingPeersCommand }> = Object.fromEntries(
  SERVICE_NAMES.map((s) => [s, pingCommands(s)]),
) as Record<ServiceName, { ping: PingCommand; pingPeers: PingPeersCommand }>;
