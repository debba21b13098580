import type { ServiceDefinition } from '@stack/runtime';

import { AuditModule } from './audit.module';

export { AuditModule };

export const auditService: ServiceDefinition = {
  service: 'audit',
  module: AuditModule,
  entities: [],
  migrations: [],
};
