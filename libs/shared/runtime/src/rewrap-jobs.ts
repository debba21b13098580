/**
 * Master-key rotation, step 2, for every service this process runs: each table of sealed values
 * a service declares (ServiceDefinition.sealedValues — connections' secrets, drop-off payloads)
 * has its data keys re-wrapped under the current key, at start and every 10 minutes, by one
 * replica at a time (a cache lock per service). `stack admin rotate-master-key --rewrap` does the
 * same on demand.
 */
import type { DataSource } from 'typeorm';

import type { Cache } from '@stack/cache';
import type { ServiceName } from '@stack/contracts';
import type { StackLogger } from '@stack/observability';
import { errorMessage } from '@stack/persistence';
import { EnvelopeCipher, KeyRotation, Keyring } from '@stack/security';

import type { SealedValues, ServiceDefinition } from './service-definition';

const REWRAP_EVERY_MS = 10 * 60_000;
const LOCK_TTL_MS = 5 * 60_000;

export interface RewrapJobsOptions {
  services: readonly ServiceDefinition[];
  dataSources: ReadonlyMap<ServiceName, DataSource>;
  masterKeys: string;
  cache: Cache;
  logger: StackLogger;
  instanceId: string;
}

/** Starts the background re-wrap; returns what stops it. */
export function startRewrapJobs(o: RewrapJobsOptions): () => void {
  const tables = o.services.flatMap((d) => (d.sealedValues?.(o.dataSources.get(d.service)!) ?? []).map((t) => ({ service: d.service, table: t })));
  if (tables.length === 0) return () => undefined;
  const cipher = new EnvelopeCipher(Keyring.parse(o.masterKeys));
  const run = () => {
    for (const { service, table } of tables) void rewrapUnderLock(o, service, table, cipher);
  };
  const first = setImmediate(run);
  const timer = setInterval(run, REWRAP_EVERY_MS);
  timer.unref();
  return () => {
    clearImmediate(first);
    clearInterval(timer);
  };
}

async function rewrapUnderLock(o: RewrapJobsOptions, service: ServiceName, table: SealedValues, cipher: EnvelopeCipher): Promise<void> {
  const lock = `rewrap:${service}:${table.label}`;
  const about = { service, table: table.label };
  try {
    if (!(await o.cache.setIfAbsent(lock, o.instanceId, { ttlMs: LOCK_TTL_MS }))) return;
    try {
      const report = await new KeyRotation(table.store, cipher).rewrapAll({
        // The message only: a vault or SQL error object may carry the sealed row as query parameters.
        onError: (id, err) => o.logger.warn({ ...about, record_id: id, error: errorMessage(err) }, 'a sealed value could not be re-wrapped (is its key still in STACK_MASTER_KEYS?)'),
      });
      if (report.rewrapped || report.failed) o.logger.info({ ...about, ...report, byKey: await table.store.countByKey() }, 'sealed values re-wrapped under the current key');
    } finally {
      await o.cache.delIfEquals(lock, o.instanceId);
    }
  } catch (err) {
    o.logger.warn({ ...about, err: errorMessage(err) }, 'background re-wrap failed; it runs again later');
  }
}
