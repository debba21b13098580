import type { ServiceDefinition } from '@stack/runtime';

import { AuditModule } from './audit.module';
import { AuditInit1764300000000 } from './store/audit-init.migration';

export { AuditModule };
export { auditCliCommand } from './cli/audit-verify.command';
export { AUDIT_CALLER_RESOLVER, type AuditCallerResolver } from './api/audit-caller.resolver';

export const auditService: ServiceDefinition = {
  service: 'audit',
  module: AuditModule,
  entities: [],
  migrations: [AuditInit1764300000000],
};
// For benchmarks and tests that drive the log directly.
export { startAuditTestKit, type AuditTestKit } from './testing/audit-test-kit';
