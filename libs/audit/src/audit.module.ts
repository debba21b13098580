/**
 * The audit service's root module: the log (ingest from STACK_AUDIT, trees, checkpoints), its bus
 * commands and its REST routes, whose callers the shared Credentials resolve.
 */
import { Inject, Module, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';

import type { Handle } from '@stack/bus';
import { Credentials, CredentialsModule, serviceKitToken, type ServiceKit } from '@stack/runtime';

import { serveAuditCommands } from './api/audit-bus.handlers';
import { AUDIT_CALLER_RESOLVER, credentialsCallerResolver } from './api/audit-caller.resolver';
import { AuditController } from './api/audit.controller';
import { AuditLog } from './log/audit-log.service';

const KIT = serviceKitToken('audit');

@Module({
  imports: [CredentialsModule],
  controllers: [AuditController],
  providers: [
    { provide: AuditLog, useFactory: (kit: ServiceKit) => new AuditLog(kit), inject: [KIT] },
    { provide: AUDIT_CALLER_RESOLVER, useFactory: (credentials: Credentials) => credentialsCallerResolver(credentials), inject: [Credentials] },
  ],
  exports: [AuditLog],
})
export class AuditModule implements OnApplicationBootstrap, OnModuleDestroy {
  private handles: Handle[] = [];

  constructor(
    @Inject(AuditLog) private readonly log: AuditLog,
    @Inject(KIT) private readonly kit: ServiceKit,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.handles = serveAuditCommands(this.kit, this.log);
    await this.log.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.log.stop();
    await Promise.all(this.handles.map((h) => h.stop()));
  }
}
