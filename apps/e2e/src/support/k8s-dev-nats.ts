/**
 * A private nats-server started from the dev overlay's own configuration files
 * (k8s/overlays/dev/engines/nats.conf and nats-auth.conf): JetStream, max_payload and the
 * per-service users with their permissions, as the dev StatefulSet runs them. Only the
 * listen addresses and the store directory differ; the passwords are fresh.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SERVICE_NAMES } from '@stack/contracts';
import type { ServiceName } from '@stack/contracts';
import { freePort, repoRoot, startConfiguredNatsServer, type ManagedProcess } from '@stack/testing';

import { DEV_NATS_AUTH_CONF, DEV_NATS_CONF } from './k8s-nats-permissions';

export interface DevNats {
  /** `nats://<service>:<password>@127.0.0.1:<port>`: what NATS_URL_<SERVICE> holds in the Secret. */
  urlFor(service: ServiceName): string;
  port: number;
  process: ManagedProcess;
  stop(): Promise<void>;
}

export async function startDevNats(): Promise<DevNats> {
  const dir = mkdtempSync(join(tmpdir(), 'stack-dev-nats-'));
  const conf = readFileSync(join(repoRoot(), DEV_NATS_CONF), 'utf8');
  const storeLine = /^(\s*)store_dir: .*$/m;
  if (!storeLine.test(conf)) throw new Error(`${DEV_NATS_CONF} has no store_dir line`);
  writeFileSync(join(dir, 'nats.conf'), conf.replace(storeLine, `$1store_dir: ${join(dir, 'store')}`));
  writeFileSync(join(dir, 'nats-auth.conf'), readFileSync(join(repoRoot(), DEV_NATS_AUTH_CONF), 'utf8'));
  // nats-server reads an environment variable reference as a config value: one that starts with a
  // digit is taken for a number and the config fails to parse, so the passwords start with a letter.
  const passwords = new Map<ServiceName, string>(SERVICE_NAMES.map((s) => [s, `p${randomBytes(12).toString('hex')}`]));
  const env: Record<string, string> = { POD_NAME: 'stack-nats-0' };
  for (const [service, password] of passwords) env[`NATS_PASSWORD_${service.toUpperCase().replace(/-/g, '_')}`] = password;
  const port = await freePort();
  const monitor = await freePort();
  const nats = await startConfiguredNatsServer({
    name: `dev-nats-${port}`,
    args: ['-c', join(dir, 'nats.conf'), '-a', '127.0.0.1', '-p', String(port), '-m', String(monitor)],
    monitorPort: monitor,
    dir,
    env,
  });
  return {
    port,
    process: nats.process,
    urlFor: (service) => `nats://${encodeURIComponent(service)}:${passwords.get(service)}@127.0.0.1:${port}`,
    stop: () => nats.stop(),
  };
}
