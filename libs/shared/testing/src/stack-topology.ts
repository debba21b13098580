/**
 * STACK started the two ways it runs, for end-to-end tests (and people):
 *
 * - distributed: one process per service replica (the compiled `apps/stack` entry with
 *   STACK_SERVICES=<service>) against the real Postgres, NATS and Redis, behind the reverse proxy
 *   with the Ingress's routes, all on a fresh database and bus prefix;
 * - one process: every service in one process, by default fully embedded (PGlite, in-process bus
 *   and cache), exactly what `npm start` runs.
 *
 * Both run the compiled code in dist/ (built once per run by tools/build.mjs; `npm test` builds
 * before Jest and sets STACK_TEST_PREBUILT so workers do not rebuild mid-run).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { PUBLIC_ROUTES, SERVICE_NAMES } from '@stack/contracts';
import type { ServiceName } from '@stack/contracts';

import { freePort } from './free-port';
import { startProcess } from './managed-process';
import type { ManagedProcess, StopOptions } from './managed-process';
import { startReverseProxy } from './reverse-proxy';
import type { ReverseProxy } from './reverse-proxy';
import { createTestDatabase, dropBusStreams, TEST_NATS_URL, TEST_REDIS_URL, uniqueName } from './servers';
import type { TestDatabase } from './servers';
import { repoRoot } from './test-artifacts';

type Env = Record<string, string | undefined>;

export const STACK_ENTRY = 'dist/apps/stack/src/main.js';

/**
 * The Node.js options every STACK server process runs with, here as under `npm start`
 * (tools/bootstrap.mjs) and in the container image (deploy/Dockerfile's CMD): a young generation
 * of up to 32 MB per semi-space instead of 16. A proxy call's audit records live a few tens of
 * milliseconds (until their batch commits); with the default the scavenger runs every ~25 ms at
 * saturation, copies them and promotes a megabyte each time. Measured in the one-process shape at
 * saturation: half the scavenges, 6–10 % more calls per second, ~65 MB more resident memory.
 */
export const STACK_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=32'];

let built: Promise<string> | undefined;

/**
 * The compiled stack entry, building first when needed (once per test worker; tools/build.mjs
 * itself serialises parallel workers with a lock and skips work when dist/ is current).
 */
export function ensureStackBuilt(): Promise<string> {
  built ??= (async () => {
    const root = repoRoot();
    const entry = join(root, STACK_ENTRY);
    if (process.env.STACK_TEST_PREBUILT !== '1') {
      const output: string[] = [];
      const code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(process.execPath, [join(root, 'tools', 'build.mjs'), '--quiet'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout.on('data', (d: Buffer) => output.push(d.toString()));
        child.stderr.on('data', (d: Buffer) => output.push(d.toString()));
        child.on('error', reject);
        child.on('close', resolve);
      });
      if (code !== 0) throw new Error(`building STACK (node tools/build.mjs) failed:\n${output.join('').slice(-4000)}`);
    }
    if (!existsSync(entry)) {
      throw new Error(`${STACK_ENTRY} does not exist: build with \`node tools/build.mjs\` (npm test does it before running Jest)`);
    }
    return entry;
  })();
  // A failed build is reported to every caller of this run, but a later run may retry.
  built.catch(() => {
    built = undefined;
  });
  return built;
}

/** The inherited environment minus everything STACK reads, so a developer's shell cannot leak into a test's processes. */
function baseEnv(): Env {
  const env: Env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(STACK_|OTEL_)/.test(k) || ['PORT', 'HOST', 'DATABASE_URL', 'NATS_URL', 'REDIS_URL', 'LOG_LEVEL', 'NODE_OPTIONS'].includes(k)) continue;
    env[k] = v;
  }
  return env;
}

/** Fresh secrets of the shapes STACK expects. */
export function generateStackSecrets(): { internalSecret: string; masterKeys: string } {
  return {
    internalSecret: randomBytes(32).toString('base64'),
    masterKeys: `k1:${randomBytes(32).toString('base64')}`,
  };
}

async function runMigrations(entry: string, env: Env, name: string, track: (p: ManagedProcess) => void): Promise<void> {
  const migrate = await startProcess({ name, command: process.execPath, args: ['--enable-source-maps', entry, 'migrate'], env, cleanEnv: true, cwd: repoRoot() });
  track(migrate);
  const timer = setTimeout(() => void migrate.stop(), 120_000);
  const code = await migrate.exited;
  clearTimeout(timer);
  if (code !== 0) {
    throw new Error(`\`main.js migrate\` exited with code ${code}; last lines (all in ${migrate.logFile}):\n${migrate.logs().slice(-50).join('\n')}`);
  }
}

export interface StackProcess {
  service: ServiceName;
  replica: number;
  /** `http://127.0.0.1:<port>` of this process itself (not the proxy). */
  url: string;
  port: number;
  instanceId: string;
  process: ManagedProcess;
}

export interface DistributedStackOptions {
  /** Replicas per service (default 1 each). */
  replicas?: Partial<Record<ServiceName, number>>;
  /** Which services to start (default all six). */
  services?: readonly ServiceName[];
  /** Added to every process's environment (`undefined` removes a variable). */
  env?: Env;
  /** Added to one service's processes only. */
  serviceEnv?: Partial<Record<ServiceName, Env>>;
  /** A NATS of the test's own (startNatsServer) instead of the shared one. */
  natsUrl?: string;
  redisUrl?: string;
  /** Default `info`. */
  logLevel?: string;
  /** Per process; default 60 s. */
  readyTimeoutMs?: number;
  /** Let the reverse proxy retry bodyless requests on a replica that refuses (Ingress-like). */
  retryIdempotent?: boolean;
  /** A script to run instead of dist/apps/stack/src/main.js (no build); this harness's own tests use a stand-in. */
  entry?: string;
}

export interface DistributedStack {
  /** The reverse proxy's URL: STACK_PUBLIC_URL of every process. */
  publicUrl: string;
  proxy: ReverseProxy;
  database: TestDatabase;
  busPrefix: string;
  natsUrl: string;
  redisUrl: string;
  internalSecret: string;
  masterKeys: string;
  processes: StackProcess[];
  /** The environment every process got (before per-service additions). */
  env: Record<string, string>;
  /** Starts one more replica of `service`, waits for /readyz, and adds it to the proxy. */
  addReplica(service: ServiceName, env?: Env): Promise<StackProcess>;
  /** Takes a replica out of the proxy first (as a readiness probe would), then stops it. */
  removeReplica(replica: StackProcess, options?: StopOptions): Promise<number | null>;
  /** Every log line of every process started so far (running or not). */
  logs(): string[];
  /** Stops every process (SIGTERM), the proxy, and drops the database and the run's JetStream streams. */
  stop(): Promise<void>;
}

export async function startDistributedStack(options: DistributedStackOptions = {}): Promise<DistributedStack> {
  const entry = options.entry ?? (await ensureStackBuilt());
  const services = options.services ?? SERVICE_NAMES;
  const busPrefix = uniqueName('e2e');
  const natsUrl = options.natsUrl ?? TEST_NATS_URL;
  const redisUrl = options.redisUrl ?? TEST_REDIS_URL;
  const { internalSecret, masterKeys } = generateStackSecrets();
  const dataRoot = await mkdtemp(join(tmpdir(), 'stack-e2e-'));
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;

  const everyProcess: ManagedProcess[] = [];
  const processes: StackProcess[] = [];
  let database: TestDatabase | undefined;
  let proxy: ReverseProxy | undefined;
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.allSettled(everyProcess.map((p) => p.stop({ timeoutMs: 15_000 })));
      await Promise.allSettled([proxy?.stop(), database?.drop(), rm(dataRoot, { recursive: true, force: true }), dropBusStreams(busPrefix, natsUrl)]);
    })();
    return stopping;
  };

  try {
    database = await createTestDatabase('stack_e2e');
    // The proxy comes first: its URL is every process's public origin.
    proxy = await startReverseProxy({ routes: PUBLIC_ROUTES, upstreams: {}, retryIdempotent: options.retryIdempotent });
    const env: Env = {
      ...baseEnv(),
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      STACK_PUBLIC_URL: proxy.url,
      DATABASE_URL: database.url,
      NATS_URL: natsUrl,
      REDIS_URL: redisUrl,
      STACK_BUS_PREFIX: busPrefix,
      STACK_INTERNAL_SECRET: internalSecret,
      STACK_MASTER_KEYS: masterKeys,
      STACK_MIGRATE_ON_START: 'false',
      // The reverse proxy is on loopback: its X-Forwarded-For is to be believed, as an Ingress's would be.
      STACK_TRUSTED_PROXIES: '127.0.0.1/32,::1/128',
      LOG_LEVEL: options.logLevel ?? 'info',
      ...options.env,
    };
    const sharedEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) sharedEnv[k] = v;

    await runMigrations(entry, { ...env, STACK_SERVICES: 'all', STACK_DATA_DIR: join(dataRoot, 'migrate') }, `${busPrefix}.migrate`, (p) => everyProcess.push(p));

    const nextReplica = new Map<ServiceName, number>();
    const launch = async (service: ServiceName, extraEnv: Env = {}): Promise<StackProcess> => {
      const replica = (nextReplica.get(service) ?? 0) + 1;
      nextReplica.set(service, replica);
      const port = await freePort();
      const instanceId = `${service}-${replica}`;
      const url = `http://127.0.0.1:${port}`;
      const managed = await startProcess({
        name: `${busPrefix}.${instanceId}`,
        command: process.execPath,
        args: ['--enable-source-maps', ...STACK_NODE_OPTIONS, entry],
        cwd: repoRoot(),
        cleanEnv: true,
        env: {
          ...env,
          ...options.serviceEnv?.[service],
          ...extraEnv,
          PORT: String(port),
          STACK_SERVICES: service,
          STACK_INSTANCE_ID: instanceId,
          STACK_DATA_DIR: join(dataRoot, instanceId),
        },
        readyUrl: `${url}/readyz`,
        readyTimeoutMs,
      });
      everyProcess.push(managed);
      const started: StackProcess = { service, replica, url, port, instanceId, process: managed };
      processes.push(started);
      return started;
    };
    const syncProxy = (service: ServiceName): void => {
      proxy?.setUpstreams(
        service,
        processes.filter((p) => p.service === service && p.process.running()).map((p) => p.url),
      );
    };

    const plan: ServiceName[] = [];
    for (const service of services) {
      const count = options.replicas?.[service] ?? 1;
      for (let i = 0; i < count; i += 1) plan.push(service);
    }
    const results = await Promise.allSettled(plan.map((service) => launch(service)));
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) {
      throw new Error(`${failures.length} of ${plan.length} STACK processes did not become ready:\n\n${failures.map((f) => (f.reason instanceof Error ? f.reason.message : String(f.reason))).join('\n\n')}`);
    }
    // Listed in plan order, whatever order they became ready in.
    processes.sort((a, b) => services.indexOf(a.service) - services.indexOf(b.service) || a.replica - b.replica);
    for (const service of services) syncProxy(service);

    return {
      publicUrl: proxy.url,
      proxy,
      database,
      busPrefix,
      natsUrl,
      redisUrl,
      internalSecret,
      masterKeys,
      processes,
      env: sharedEnv,
      async addReplica(service, extraEnv) {
        const started = await launch(service, extraEnv);
        syncProxy(service);
        return started;
      },
      async removeReplica(replica, stopOptions) {
        proxy?.setUpstreams(
          replica.service,
          processes.filter((p) => p.service === replica.service && p !== replica && p.process.running()).map((p) => p.url),
        );
        const code = await replica.process.stop(stopOptions);
        const i = processes.indexOf(replica);
        if (i !== -1) processes.splice(i, 1);
        return code;
      },
      logs: () => everyProcess.flatMap((p) => p.logs()),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

export interface OneProcessStackOptions {
  /**
   * Default true: no DATABASE_URL, NATS_URL or REDIS_URL (PGlite, in-process bus and cache) in a
   * temporary STACK_DATA_DIR. False: a fresh database on the shared Postgres, the shared NATS and
   * Redis under a unique prefix.
   */
  embedded?: boolean;
  /** Start through `node tools/bootstrap.mjs start` (what `npm start` runs) instead of dist directly. */
  viaNpmStart?: boolean;
  env?: Env;
  /** Default `info`. */
  logLevel?: string;
  /** Default 120 s (an embedded first start creates and migrates its database). */
  readyTimeoutMs?: number;
  /** A script to run instead of dist/apps/stack/src/main.js (no build); this harness's own tests use a stand-in. */
  entry?: string;
  /** Extra Node.js options before the entry script (profiling: `--cpu-prof`, `--require …`). */
  nodeArgs?: string[];
}

export interface OneProcessStack {
  publicUrl: string;
  port: number;
  process: ManagedProcess;
  dataDir: string;
  /** Only when not embedded. */
  database?: TestDatabase;
  busPrefix?: string;
  /** Stops the process (SIGTERM), deletes the data dir, drops the database if any. */
  stop(): Promise<void>;
}

export async function startOneProcessStack(options: OneProcessStackOptions = {}): Promise<OneProcessStack> {
  const entry = options.entry ?? (await ensureStackBuilt());
  const embedded = options.embedded ?? true;
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const dataDir = await mkdtemp(join(tmpdir(), 'stack-one-'));
  let database: TestDatabase | undefined;
  let managed: ManagedProcess | undefined;
  let busPrefix: string | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await managed?.stop({ timeoutMs: 15_000 });
      await Promise.allSettled([database?.drop(), rm(dataDir, { recursive: true, force: true })]);
    })();
    return stopping;
  };

  try {
    const env: Env = {
      ...baseEnv(),
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: String(port),
      STACK_PUBLIC_URL: publicUrl,
      STACK_SERVICES: 'all',
      STACK_DATA_DIR: dataDir,
      LOG_LEVEL: options.logLevel ?? 'info',
    };
    if (!embedded) {
      database = await createTestDatabase('stack_one');
      busPrefix = uniqueName('one');
      const secrets = generateStackSecrets();
      Object.assign(env, {
        DATABASE_URL: database.url,
        NATS_URL: TEST_NATS_URL,
        REDIS_URL: TEST_REDIS_URL,
        STACK_BUS_PREFIX: busPrefix,
        STACK_INTERNAL_SECRET: secrets.internalSecret,
        STACK_MASTER_KEYS: secrets.masterKeys,
      });
    }
    Object.assign(env, options.env);
    const root = repoRoot();
    managed = await startProcess({
      name: `${busPrefix ?? uniqueName('one')}.stack`,
      command: process.execPath,
      args: options.viaNpmStart ? [join(root, 'tools', 'bootstrap.mjs'), 'start'] : ['--enable-source-maps', ...STACK_NODE_OPTIONS, ...(options.nodeArgs ?? []), entry],
      cwd: root,
      cleanEnv: true,
      env,
      readyUrl: `${publicUrl}/readyz`,
      readyTimeoutMs: options.readyTimeoutMs ?? 120_000,
    });
    return { publicUrl, port, process: managed, dataDir, database, busPrefix, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
