/** Events the audit service publishes for other teams (metadata only). */
import { Type } from '@sinclair/typebox';

import { defineEvent } from '../bus/definitions';

/** A checkpoint of one operator's tree was signed. Carries the signed note so consumers can keep it elsewhere (witnessing). */
export const AuditCheckpointSignedEvent = defineEvent({
  entity: 'audit_checkpoint',
  verb: 'signed',
  stream: 'EVENTS',
  description: 'The audit service signed a checkpoint (origin, tree size, root) of an operator\'s log.',
  payload: Type.Object({
    operator_id: Type.String(),
    origin: Type.String(),
    tree_size: Type.Integer({ minimum: 0 }),
    root_hash: Type.String({ description: 'base64' }),
    note: Type.String({ description: 'C2SP signed note of the tlog-checkpoint' }),
    signed_at: Type.String({ format: 'date-time' }),
  }),
});

export const AUDIT_EVENTS = [AuditCheckpointSignedEvent] as const;
