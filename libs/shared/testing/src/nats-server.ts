/**
 * A NATS server of the test's own, on free ports with its own JetStream store, for fault tests
 * (restart the bus, take it down for a while) that must never touch the machine's shared server.
 * `restart()` brings it back on the same port with the same store, as a real restart would.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort } from './free-port';
import { startProcess } from './managed-process';
import type { ManagedProcess, StopOptions } from './managed-process';
import { uniqueName } from './servers';

export interface NatsServerOptions {
  /** Default true. */
  jetstream?: boolean;
  /** Default /usr/sbin/nats-server, or STACK_TEST_NATS_SERVER. */
  binary?: string;
  /** Default a free port. */
  port?: number;
}

export interface TestNatsServer {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The HTTP monitoring endpoint (`/healthz`, `/jsz`, `/varz`). */
  monitorUrl: string;
  storeDir: string;
  /** Stops it for good and deletes its store. */
  stop(): Promise<void>;
  /** Stops it (SIGTERM by default; SIGKILL to simulate a crash), keeping port and store. */
  down(options?: StopOptions): Promise<void>;
  /** Starts it again after down(), same port and store; resolves once it (and JetStream) is ready. */
  up(): Promise<void>;
  /** down(), an optional pause, up(). */
  restart(options?: StopOptions & { downMs?: number }): Promise<void>;
  /** The running server process, e.g. to read its log. */
  process(): ManagedProcess | undefined;
}

/**
 * The nats-server executable tests start: `explicit`, else STACK_TEST_NATS_SERVER, else
 * /usr/sbin/nats-server (where Debian's package puts it). A path that does not exist fails here,
 * with what to do about it, rather than as a spawn error; a bare name is left to PATH.
 */
function natsServerBinary(explicit?: string): string {
  const candidate = explicit ?? process.env.STACK_TEST_NATS_SERVER ?? '/usr/sbin/nats-server';
  if (candidate.includes('/') && !existsSync(candidate)) {
    throw new Error(`nats-server not found at ${candidate}; install it (apt-get install nats-server) or set STACK_TEST_NATS_SERVER`);
  }
  return candidate;
}

export interface ConfiguredNatsServerOptions {
  /** Shown in errors and used for the log file name. */
  name: string;
  /** The nats-server arguments, e.g. `['-c', '<dir>/nats.conf']`. */
  args: readonly string[];
  /** Port of the HTTP monitoring endpoint the configuration or `args` open; polled until JetStream is ready. */
  monitorPort: number;
  /** Directory holding the configuration and the store: removed by stop(), or when the start fails. */
  dir: string;
  /** The server's whole environment besides PATH (it starts from a clean one). */
  env?: Record<string, string>;
  /** Default natsServerBinary(). */
  binary?: string;
}

export interface ConfiguredNatsServer {
  process: ManagedProcess;
  /** Stops the server and deletes `dir`. */
  stop(): Promise<void>;
}

/**
 * A nats-server run from a configuration a test wrote into `dir` (JetStream required), for
 * tests that need the server configured as a deployment configures it rather than
 * startNatsServer()'s plain one. Resolves once /healthz reports JetStream ready.
 */
export async function startConfiguredNatsServer(options: ConfiguredNatsServerOptions): Promise<ConfiguredNatsServer> {
  let proc: ManagedProcess;
  try {
    proc = await startProcess({
      name: options.name,
      command: natsServerBinary(options.binary),
      args: options.args,
      env: options.env,
      cleanEnv: true,
      readyUrl: `http://127.0.0.1:${options.monitorPort}/healthz?js-enabled-only=true`,
      readyTimeoutMs: 30_000,
    });
  } catch (e) {
    await rm(options.dir, { recursive: true, force: true });
    throw e;
  }
  return {
    process: proc,
    async stop() {
      await proc.stop({ timeoutMs: 10_000 });
      await rm(options.dir, { recursive: true, force: true });
    },
  };
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<TestNatsServer> {
  const binary = natsServerBinary(options.binary);
  const jetstream = options.jetstream ?? true;
  const port = options.port ?? (await freePort());
  const monitorPort = await freePort();
  const storeDir = await mkdtemp(join(tmpdir(), 'stack-nats-'));
  const name = uniqueName('nats');
  let current: ManagedProcess | undefined;
  let starts = 0;

  const up = async (): Promise<void> => {
    if (current?.running()) return;
    starts += 1;
    const args = ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort)];
    if (jetstream) args.push('-js', '-sd', storeDir);
    current = await startProcess({
      name: `${name}.${starts}`,
      command: binary,
      args,
      // /healthz answers 200 only once the server, and JetStream when enabled, is ready.
      readyUrl: `http://127.0.0.1:${monitorPort}/healthz`,
      readyTimeoutMs: 30_000,
    });
  };
  const down = async (stopOptions: StopOptions = {}): Promise<void> => {
    await current?.stop({ timeoutMs: 5000, ...stopOptions });
  };

  try {
    await up();
  } catch (e) {
    await rm(storeDir, { recursive: true, force: true });
    throw e;
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorUrl: `http://127.0.0.1:${monitorPort}`,
    storeDir,
    up,
    down,
    async restart({ downMs = 0, ...stopOptions } = {}) {
      await down(stopOptions);
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
      await up();
    },
    async stop() {
      await down();
      await rm(storeDir, { recursive: true, force: true });
    },
    process: () => current,
  };
}
