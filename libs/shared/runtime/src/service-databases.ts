/**
 * For command-line work outside a running STACK (`migrate`, `admin …`): the databases of the
 * given services — the embedded Postgres when DATABASE_URL is unset — migrated under the
 * advisory lock, handed to `work`, and closed again whatever happens.
 */
import type { StackConfig } from '@stack/config';
import type { ServiceName } from '@stack/contracts';
import type { StackLogger } from '@stack/observability';
import { createServiceDataSource, migrateUnderLock, startEmbeddedPostgres, type ServiceDataSource } from '@stack/persistence';

import { ensurePrivateDataDir } from './local-secrets';
import type { ServiceDefinition } from './service-definition';

export interface ServiceDatabase {
  dataSource: ServiceDataSource;
  /** Migrations this call applied (empty when the schema was current). */
  applied: string[];
}

export async function withServiceDatabases<T>(
  config: StackConfig,
  logger: StackLogger,
  definitions: readonly ServiceDefinition[],
  work: (databases: Map<ServiceName, ServiceDatabase>) => Promise<T>,
): Promise<T> {
  if (!config.databaseUrl) ensurePrivateDataDir(config.dataDir, (msg) => logger.warn(msg));
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: config.dataDir, logger });
  const databases = new Map<ServiceName, ServiceDatabase>();
  try {
    for (const def of definitions) {
      const dataSource = createServiceDataSource({ service: def.service, url: config.databaseUrl ?? embedded!.url, entities: [...def.entities], migrations: [...def.migrations], poolSize: 1 });
      await dataSource.initialize();
      databases.set(def.service, { dataSource, applied: [] });
      databases.get(def.service)!.applied = await migrateUnderLock(dataSource, { logger });
    }
    return await work(databases);
  } finally {
    for (const { dataSource } of databases.values()) if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.close();
  }
}

/** The one service's definition this binary must contain for a command to run. */
export function definitionOf(available: readonly ServiceDefinition[], service: ServiceName): ServiceDefinition {
  const def = available.find((d) => d.service === service);
  if (!def) throw new Error(`this binary does not contain the ${service} service`);
  return def;
}
