/**
 * Drop-offs (issue 9): one agent hands a payload to another under a JSON Schema both agreed on.
 * The passport service owns them (a drop-off is addressed to agents). Commands are what the MCP
 * gateway calls for `stack_create_dropoff`, `stack_deposit` and `stack_collect`; REST serves the
 * same operations under `/v1/dropoffs`. Events carry metadata only, never the payload.
 */
import { Type, type Static } from '@sinclair/typebox';

import { defineCommand, defineEvent } from '../bus/definitions';

export const DROPOFF_LIMITS = {
  /** The schema, as JSON, at most this many bytes (INVALID_SCHEMA beyond). */
  schemaBytes: 64 * 1024,
  /** The payload, as JSON, at most this many bytes (PAYLOAD_TOO_LARGE beyond). */
  payloadBytes: 512 * 1024,
  defaultTtlSeconds: 1800,
  minTtlSeconds: 10,
  maxTtlSeconds: 24 * 3600,
  /** Named recipients of one drop-off. */
  maxRecipients: 20,
  /** Longest wait for a deposit in one request (REST long-poll and the collect tool). */
  maxWaitSeconds: 60,
} as const;

export const DROPOFF_ID_PATTERN = '^drp_[A-Za-z0-9_-]{16,64}$';

export const DropoffStatusSchema = Type.Union([Type.Literal('created'), Type.Literal('deposited'), Type.Literal('collected'), Type.Literal('expired')]);
export type DropoffStatus = Static<typeof DropoffStatusSchema>;

/** An agent named by its id (`agt_…`) or its name in the operator. */
const AgentRef = Type.String({ minLength: 1, maxLength: 128 });

/** A drop-off as its creator and recipients see it: never the payload. */
export const DropoffSchema = Type.Object({
  id: Type.String({ pattern: DROPOFF_ID_PATTERN }),
  status: DropoffStatusSchema,
  to_agents: Type.Array(Type.String(), { description: 'Agent ids that may collect; the first to collect wins.' }),
  schema: Type.Unknown({ description: 'The JSON Schema (draft 2020-12) the payload must match.' }),
  created_by: Type.Object({ member_id: Type.Optional(Type.String()), agent_id: Type.Optional(Type.String()) }),
  created_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  deposited_at: Type.Optional(Type.String({ format: 'date-time' })),
  collected_at: Type.Optional(Type.String({ format: 'date-time' })),
  collected_by: Type.Optional(Type.String({ description: 'The agent id that collected it.' })),
  payload_bytes: Type.Optional(Type.Integer()),
});
export type DropoffView = Static<typeof DropoffSchema>;

export const CreateDropoffRequest = Type.Object({
  to_agent: Type.Optional(AgentRef),
  to_agents: Type.Optional(Type.Array(AgentRef, { minItems: 1, maxItems: DROPOFF_LIMITS.maxRecipients })),
  schema: Type.Unknown({ description: 'A JSON Schema, draft 2020-12, at most 64 KB.' }),
  ttl_seconds: Type.Optional(Type.Integer({ minimum: DROPOFF_LIMITS.minTtlSeconds, maximum: DROPOFF_LIMITS.maxTtlSeconds })),
  payload: Type.Optional(Type.Unknown({ description: 'Deposit at creation (at most 512 KB as JSON).' })),
});
export type CreateDropoffInput = Static<typeof CreateDropoffRequest>;

export const DepositRequest = Type.Object({
  dropoff_id: Type.String(),
  payload: Type.Unknown(),
});
export type DepositInput = Static<typeof DepositRequest>;

export const CollectRequest = Type.Object({
  dropoff_id: Type.String(),
  wait_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: DROPOFF_LIMITS.maxWaitSeconds, description: 'Wait this long for a deposit before answering DROPOFF_NOT_DEPOSITED.' })),
});
export type CollectInput = Static<typeof CollectRequest>;

export const CollectResponse = Type.Object({
  dropoff_id: Type.String(),
  payload: Type.Unknown(),
  collected_at: Type.String({ format: 'date-time' }),
  collected_by: Type.String(),
  created_by: Type.Object({ member_id: Type.Optional(Type.String()), agent_id: Type.Optional(Type.String()) }),
});
export type CollectResult = Static<typeof CollectResponse>;

export const GetDropoffRequest = Type.Object({
  dropoff_id: Type.String(),
  wait_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: DROPOFF_LIMITS.maxWaitSeconds, description: 'Long-poll: answer once the drop-off is no longer waiting for its deposit, or after this long.' })),
});

const dropoffCommand = <Req extends Parameters<typeof defineCommand>[0]['request'], Res extends Parameters<typeof defineCommand>[0]['response']>(name: string, description: string, request: Req, response: Res) =>
  defineCommand({ service: 'passport', name, description, request, response });

export const DROPOFF_COMMANDS = {
  create: dropoffCommand('create_dropoff', 'Creates a drop-off for named agents under a JSON Schema, optionally depositing its payload at once.', CreateDropoffRequest, DropoffSchema),
  deposit: dropoffCommand('deposit_dropoff', 'Deposits the payload of a drop-off the caller created.', DepositRequest, DropoffSchema),
  collect: dropoffCommand('collect_dropoff', 'Collects (and so destroys) the payload of a drop-off addressed to the calling agent.', CollectRequest, CollectResponse),
  get: dropoffCommand('get_dropoff', 'Reads a drop-off’s state (never its payload), optionally waiting for its deposit.', GetDropoffRequest, DropoffSchema),
};
export const DROPOFF_COMMAND_LIST = Object.values(DROPOFF_COMMANDS);

const DropoffEventPayload = Type.Object({
  dropoff_id: Type.String(),
  operator_id: Type.String(),
  to_agents: Type.Array(Type.String()),
  created_by_member: Type.Optional(Type.String()),
  created_by_agent: Type.Optional(Type.String()),
  occurred_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  payload_bytes: Type.Optional(Type.Integer()),
  collected_by: Type.Optional(Type.String()),
});

/** A payload was deposited: a worker on the bus may now collect it (with its own credentials). */
export const DropoffDepositedEvent = defineEvent({
  entity: 'dropoff',
  verb: 'deposited',
  stream: 'EVENTS',
  description: 'A drop-off received its payload and waits for a recipient to collect it. Metadata only.',
  payload: DropoffEventPayload,
});

export const DropoffCollectedEvent = defineEvent({
  entity: 'dropoff',
  verb: 'collected',
  stream: 'EVENTS',
  description: 'A recipient collected a drop-off; its ciphertext is gone. Metadata only.',
  payload: DropoffEventPayload,
});

export const DropoffExpiredEvent = defineEvent({
  entity: 'dropoff',
  verb: 'expired',
  stream: 'EVENTS',
  description: 'A drop-off outlived its TTL uncollected; its ciphertext was purged. Metadata only.',
  payload: DropoffEventPayload,
});

export const DROPOFF_EVENTS = [DropoffDepositedEvent, DropoffCollectedEvent, DropoffExpiredEvent];
