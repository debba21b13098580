/** The audit service's bus commands: each reads within the verified caller context it carries. */
import type { Bus, Handle } from '@stack/bus';
import {
  AuditConsistencyProofCommand,
  AuditInclusionProofCommand,
  AuditLatestCheckpointCommand,
  AuditListCommand,
  AuditPublicKeyCommand,
  AuditSignCheckpointCommand,
  AuditVerifyCommand,
  StackError,
} from '@stack/contracts';

import type { ServiceKit } from '@stack/runtime';

import { readScope, type AuditLog } from '../log/audit-log.service';
import { recordRead } from './audit.controller';

export function serveAuditCommands(kit: ServiceKit, log: AuditLog): Handle[] {
  const bus: Bus = kit.bus;
  return [
    bus.handle(AuditListCommand, async (req, ctx) => {
      const scope = readScope(ctx.caller);
      await recordRead(kit, ctx.caller, 'audit.list');
      return log.list(scope, req);
    }),
    bus.handle(AuditVerifyCommand, async (req, ctx) => {
      const scope = readScope(ctx.caller);
      await recordRead(kit, ctx.caller, 'audit.verify');
      if (req.entry_id) return log.verifyEntry(scope, req.entry_id);
      // Whole-log checks are for admins; to anyone else the log answers as for an entry it cannot see.
      if (scope.memberId || scope.agentId) throw new StackError('NOT_FOUND', 'no such audit entry');
      const checkpoint = await log.signNow(scope.operatorId);
      const result = await log.verifyAll(scope.operatorId);
      return {
        verdict: result.ok ? ('valid' as const) : ('invalid' as const),
        ...(result.failure ? { reason: result.failure.reason, first_failure: { leaf_index: result.failure.leaf_index, ...(result.failure.entry_id ? { entry_id: result.failure.entry_id } : {}) } } : {}),
        checkpoint,
        tree_size: result.entries,
      };
    }),
    bus.handle(AuditInclusionProofCommand, (req, ctx) => log.inclusionProof(readScope(ctx.caller), req)),
    bus.handle(AuditConsistencyProofCommand, (req, ctx) => log.consistencyProof(readScope(ctx.caller), req)),
    bus.handle(AuditLatestCheckpointCommand, (_req, ctx) => log.latestCheckpoint(readScope(ctx.caller).operatorId)),
    bus.handle(AuditSignCheckpointCommand, (_req, ctx) => log.signNow(readScope(ctx.caller).operatorId)),
    bus.handle(AuditPublicKeyCommand, () => log.publicKey()),
  ];
}
