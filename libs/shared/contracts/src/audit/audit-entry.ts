/**
 * The audit entry: the object that is hashed into the log (DESIGN.md §6). Every field is
 * allow-listed here — nothing can be removed from a Merkle log, so no secret, body or query
 * string may ever reach it. These names are wire names: verifiers recompute leaf hashes over them.
 */
import { Type, type Static } from '@sinclair/typebox';

export const AUDIT_LAYERS = ['auth', 'gateway', 'proxy', 'passport', 'skills', 'dropoff', 'system'] as const;
export type AuditLayer = (typeof AUDIT_LAYERS)[number];

export const AUDIT_OUTCOMES = ['success', 'failure', 'denied'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

const Id = Type.String({ minLength: 1, maxLength: 128 });

export const AuditLayerSchema = Type.Union(AUDIT_LAYERS.map((l) => Type.Literal(l)));
export const AuditOutcomeSchema = Type.Union(AUDIT_OUTCOMES.map((o) => Type.Literal(o)));

/** What an action was aimed at. `path` never carries a query string or fragment. */
export const AuditTargetSchema = Type.Object({
  service: Type.Optional(Type.String({ maxLength: 128 })),
  connection: Type.Optional(Type.String({ maxLength: 128 })),
  method: Type.Optional(Type.String({ maxLength: 16 })),
  host: Type.Optional(Type.String({ maxLength: 253 })),
  path: Type.Optional(Type.String({ maxLength: 2048 })),
});
export type AuditTarget = Static<typeof AuditTargetSchema>;

/** An entry as stored and hashed: `{entry, leaf_index}` items carry exactly this object. */
export const AuditEntrySchema = Type.Object({
  id: Type.String({ pattern: '^aud_[A-Za-z0-9_-]{8,64}$' }),
  occurred_at: Type.String({ format: 'date-time' }),
  operator_id: Id,
  member_id: Type.Optional(Id),
  agent_id: Type.Optional(Id),
  client_id: Type.Optional(Id),
  passport_jti: Type.Optional(Id),
  session_id: Type.Optional(Id),
  layer: AuditLayerSchema,
  action: Type.String({ pattern: '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$', maxLength: 128, description: 'dotted, e.g. credential.proxy' }),
  outcome: AuditOutcomeSchema,
  target: Type.Optional(AuditTargetSchema),
  duration_ms: Type.Optional(Type.Integer({ minimum: 0 })),
  error_code: Type.Optional(Type.String({ maxLength: 64 })),
  trace_id: Type.Optional(Type.String({ maxLength: 64 })),
  /** The entry's place in its operator's tree, inside the hashed object: moving an entry breaks its hash. */
  leaf_index: Type.Integer({ minimum: 0 }),
});
export type AuditEntry = Static<typeof AuditEntrySchema>;

/** Entries of events that name no operator go to this tree (system actions); no caller can read it over the API. */
export const SYSTEM_AUDIT_OPERATOR = 'op_system';

/** The RFC 9162 shapes of the proofs, hashes in base64. */
export const InclusionProofSchema = Type.Object({
  tree_id: Type.Optional(Type.Integer({ minimum: 1 })),
  leaf_index: Type.Integer({ minimum: 0 }),
  tree_size: Type.Integer({ minimum: 1 }),
  hashes: Type.Array(Type.String()),
});
export type InclusionProof = Static<typeof InclusionProofSchema>;

export const ConsistencyProofSchema = Type.Object({
  tree_id: Type.Optional(Type.Integer({ minimum: 1 })),
  tree_size_1: Type.Integer({ minimum: 0 }),
  tree_size_2: Type.Integer({ minimum: 0 }),
  hashes: Type.Array(Type.String()),
});
export type ConsistencyProof = Static<typeof ConsistencyProofSchema>;

/** A signed checkpoint: `note` is the C2SP signed note whose text is the tlog-checkpoint. */
export const AuditCheckpointSchema = Type.Object({
  origin: Type.String(),
  tree_id: Type.Integer({ minimum: 1, description: 'Which of the operator\'s trees (one per retention period); part of the origin.' }),
  tree_size: Type.Integer({ minimum: 0 }),
  root_hash: Type.String({ description: 'base64' }),
  note: Type.String(),
  signed_at: Type.String({ format: 'date-time' }),
});
export type AuditCheckpoint = Static<typeof AuditCheckpointSchema>;
