/**
 * An audit service on real servers for integration tests and benchmarks: its own database
 * (migrated), a bus (NATS or in-process), and the AuditLog started as the runtime would.
 */
import { randomBytes } from 'node:crypto';

import { connectNatsBus, createInProcessBus, type BusConnection } from '@stack/bus';
import { createCache } from '@stack/cache';
import { loadConfig } from '@stack/config';
import { createLogger } from '@stack/observability';
import { Outbox, createServiceDataSource, migrateUnderLock, type ServiceDataSource } from '@stack/persistence';
import { AuditRecorder, type ServiceKit } from '@stack/runtime';

import { AuditLog } from '../log/audit-log.service';
import { AuditInit1764300000000 } from '../store/audit-init.migration';

export interface AuditTestKit {
  kit: ServiceKit;
  log: AuditLog;
  bus: BusConnection;
  dataSource: ServiceDataSource;
  /** A recorder speaking for another service, as callers use it. */
  recorder: AuditRecorder;
  stop(): Promise<void>;
}

export async function startAuditTestKit(options: { databaseUrl: string; natsUrl?: string; prefix: string; internalSecret?: string; checkpointIntervalMs?: number; treePeriodMs?: number; retentionMs?: number; start?: boolean }): Promise<AuditTestKit> {
  const internalSecret = options.internalSecret ?? randomBytes(32).toString('base64');
  const config = loadConfig({
    // Without NATS the in-process bus is only allowed for a process that runs every service.
    STACK_SERVICES: options.natsUrl ? 'audit' : 'all',
    DATABASE_URL: options.databaseUrl,
    ...(options.natsUrl ? { NATS_URL: options.natsUrl } : {}),
    STACK_INTERNAL_SECRET: internalSecret,
    STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    STACK_BUS_PREFIX: options.prefix,
    STACK_PUBLIC_URL: 'http://audit.test',
    STACK_AUDIT_CHECKPOINT_INTERVAL_MS: String(options.checkpointIntervalMs ?? 86_400_000),
    ...(options.treePeriodMs ? { STACK_AUDIT_TREE_PERIOD_MS: String(options.treePeriodMs) } : {}),
    ...(options.retentionMs ? { STACK_AUDIT_RETENTION_MS: String(options.retentionMs) } : {}),
    LOG_LEVEL: 'error',
  });
  const logger = createLogger({ level: 'error', service: 'audit', instance: 'test' });
  const busOptions = { prefix: options.prefix, internalSecret: Buffer.from(internalSecret, 'base64'), timeoutMs: 5000, instanceId: 'test', logger };
  const bus = options.natsUrl ? await connectNatsBus({ ...busOptions, servers: options.natsUrl }) : createInProcessBus(busOptions);
  await bus.ensureStreams();
  const dataSource = createServiceDataSource({ service: 'audit', url: options.databaseUrl, entities: [], migrations: [AuditInit1764300000000], poolSize: 3 });
  await dataSource.initialize();
  await migrateUnderLock(dataSource, {});
  const cache = createCache({ keyPrefix: `${options.prefix}:` });
  const kit: ServiceKit = { service: 'audit', bus: bus.forService('audit'), dataSource, outbox: Outbox, logger, config, cache, audit: new AuditRecorder(bus.forService('audit')) };
  const log = new AuditLog(kit);
  if (options.start !== false) await log.start();
  return {
    kit,
    log,
    bus,
    dataSource,
    recorder: new AuditRecorder(bus.forService('credential-proxy')),
    async stop() {
      await log.stop().catch(() => undefined);
      await bus.close().catch(() => undefined);
      await dataSource.destroy().catch(() => undefined);
      await cache.close().catch(() => undefined);
    },
  };
}
