/**
 * The audit service's bus commands. Each acts for the signed caller context it carries: the
 * caller's operator decides which log it reads; another operator's entries are never visible.
 * The MCP gateway serves stack_audit_list / stack_audit_verify through `list` / `verify`.
 */
import { Type } from '@sinclair/typebox';

import { defineCommand } from '../bus/definitions';
import { AuditCheckpointSchema, AuditEntrySchema, AuditOutcomeSchema, ConsistencyProofSchema, InclusionProofSchema } from './audit-entry';

export const AuditListItemSchema = Type.Object({ entry: AuditEntrySchema, leaf_index: Type.Integer({ minimum: 0 }), tree_id: Type.Optional(Type.Integer({ minimum: 1 })) });

export const AuditListFiltersSchema = Type.Object({
  member_id: Type.Optional(Type.String()),
  agent_id: Type.Optional(Type.String()),
  passport_jti: Type.Optional(Type.String()),
  session_id: Type.Optional(Type.String()),
  action: Type.Optional(Type.String()),
  outcome: Type.Optional(AuditOutcomeSchema),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  until: Type.Optional(Type.String({ format: 'date-time' })),
});

export const AuditListCommand = defineCommand({
  service: 'audit',
  name: 'list',
  description: 'Entries of the caller\'s operator, newest first (an admin sees the whole log, others their own actions).',
  request: Type.Composite([
    AuditListFiltersSchema,
    Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })), cursor: Type.Optional(Type.String()) }),
  ]),
  response: Type.Object({ items: Type.Array(AuditListItemSchema), next_cursor: Type.Optional(Type.String()) }),
});

export const AuditVerifyCommand = defineCommand({
  service: 'audit',
  name: 'verify',
  description: 'With entry_id: that entry, its inclusion proof against the latest checkpoint and the verdict. Without: recomputes the whole tree and checks it against every signed checkpoint.',
  request: Type.Object({ entry_id: Type.Optional(Type.String()) }),
  response: Type.Object({
    verdict: Type.Union([Type.Literal('valid'), Type.Literal('invalid')]),
    reason: Type.Optional(Type.String()),
    checkpoint: Type.Optional(AuditCheckpointSchema),
    entry: Type.Optional(AuditEntrySchema),
    inclusion: Type.Optional(InclusionProofSchema),
    tree_size: Type.Integer({ minimum: 0 }),
    first_failure: Type.Optional(Type.Object({ leaf_index: Type.Integer(), entry_id: Type.Optional(Type.String()) })),
  }),
});

export const AuditInclusionProofCommand = defineCommand({
  service: 'audit',
  name: 'inclusion_proof',
  description: 'RFC 9162 inclusion proof of an entry (by id or leaf index) in the tree of tree_size (default: the latest checkpoint).',
  request: Type.Object({ entry_id: Type.Optional(Type.String()), leaf_index: Type.Optional(Type.Integer({ minimum: 0 })), tree_size: Type.Optional(Type.Integer({ minimum: 1 })), tree_id: Type.Optional(Type.Integer({ minimum: 1 })) }),
  response: Type.Composite([InclusionProofSchema, Type.Object({ leaf_hash: Type.String() })]),
});

export const AuditConsistencyProofCommand = defineCommand({
  service: 'audit',
  name: 'consistency_proof',
  description: 'RFC 9162 consistency proof between two tree sizes of the caller\'s log.',
  request: Type.Object({ tree_size_1: Type.Integer({ minimum: 0 }), tree_size_2: Type.Optional(Type.Integer({ minimum: 0 })), tree_id: Type.Optional(Type.Integer({ minimum: 1 })) }),
  response: ConsistencyProofSchema,
});

export const AuditLatestCheckpointCommand = defineCommand({
  service: 'audit',
  name: 'latest_checkpoint',
  description: 'The latest signed checkpoint of the caller\'s operator.',
  request: Type.Object({}),
  response: AuditCheckpointSchema,
});

export const AuditSignCheckpointCommand = defineCommand({
  service: 'audit',
  name: 'sign_checkpoint',
  description: 'Signs a checkpoint of the caller\'s operator now (if the tree grew since the last one) and returns the latest.',
  request: Type.Object({}),
  response: AuditCheckpointSchema,
});

export const AuditPublicKeyCommand = defineCommand({
  service: 'audit',
  name: 'public_key',
  description: 'The checkpoint verifier key in the C2SP signed-note format.',
  request: Type.Object({}),
  response: Type.Object({ verifier_key: Type.String(), key_name: Type.String(), key_id: Type.String(), algorithm: Type.Literal('Ed25519') }),
});

export const AUDIT_COMMANDS = [
  AuditListCommand,
  AuditVerifyCommand,
  AuditInclusionProofCommand,
  AuditConsistencyProofCommand,
  AuditLatestCheckpointCommand,
  AuditSignCheckpointCommand,
  AuditPublicKeyCommand,
] as const;
