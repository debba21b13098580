/**
 * Events on the durable streams. Payloads carry metadata only, never a secret or a body.
 */
import { Type } from '@sinclair/typebox';

import { AuditLayerSchema, AuditOutcomeSchema, AuditTargetSchema } from '../audit/audit-entry';
import { RevocationKindSchema } from '../passport/passport-claims';
import { SERVICE_NAMES } from '../services';
import { defineEvent } from './definitions';

const ServiceNameSchema = Type.Union(SERVICE_NAMES.map((s) => Type.Literal(s)));

/** A service process finished starting. Written through its outbox, so it also proves the relay. */
export const ServiceStartedEvent = defineEvent({
  entity: 'service',
  verb: 'started',
  stream: 'EVENTS',
  description: 'A STACK service process started and is ready.',
  payload: Type.Object({
    service: ServiceNameSchema,
    instance: Type.String(),
    version: Type.String(),
    started_at: Type.String({ format: 'date-time' }),
  }),
});

/** One audit event on its way to the audit service (DESIGN.md §6). Fields are allow-listed. */
export const AuditRecordedEvent = defineEvent({
  entity: 'audit',
  verb: 'recorded',
  stream: 'AUDIT',
  description: 'An action, allowed or refused, to be appended to the audit log.',
  payload: Type.Object({
    id: Type.String({ description: 'aud_… id; the audit service deduplicates by it.' }),
    occurred_at: Type.String({ format: 'date-time' }),
    operator_id: Type.Optional(Type.String()),
    member_id: Type.Optional(Type.String()),
    agent_id: Type.Optional(Type.String()),
    client_id: Type.Optional(Type.String()),
    passport_jti: Type.Optional(Type.String()),
    session_id: Type.Optional(Type.String()),
    layer: AuditLayerSchema,
    action: Type.String({ description: 'dotted, e.g. credential.proxy' }),
    outcome: AuditOutcomeSchema,
    target: Type.Optional(AuditTargetSchema),
    error_code: Type.Optional(Type.String()),
    duration_ms: Type.Optional(Type.Number()),
    trace_id: Type.Optional(Type.String()),
  }),
});

/** A credential subject was revoked (DESIGN.md §4). */
export const RevocationRecordedEvent = defineEvent({
  entity: 'revocation',
  verb: 'recorded',
  stream: 'REVOCATIONS',
  description: 'A passport jti or an API key id (api_key) is dead, or every credential of a subject issued up to revoked_at_ms is.',
  payload: Type.Object({
    id: Type.String(),
    kind: RevocationKindSchema,
    value: Type.String(),
    operator_id: Type.String(),
    revoked_at_ms: Type.Integer(),
    expires_at_ms: Type.Integer({ description: 'After this no credential it could match is alive.' }),
    reason: Type.Optional(Type.String()),
  }),
});

/** The passport service's heartbeat: the revocation stream's last sequence at `at_ms`. */
export const RevocationHeartbeatEvent = defineEvent({
  entity: 'revocation',
  verb: 'heartbeat_emitted',
  stream: 'REVOCATIONS',
  description: 'Lets every node tell whether its revocation state is fresh.',
  payload: Type.Object({
    at_ms: Type.Integer(),
    last_seq: Type.Integer(),
  }),
});

export const ALL_EVENTS = [ServiceStartedEvent, AuditRecordedEvent, RevocationRecordedEvent, RevocationHeartbeatEvent] as const;
