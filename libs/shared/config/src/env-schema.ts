/**
 * Every environment variable STACK reads, with its parser, default and documentation.
 * The README's configuration table is checked against this list by a test, so a variable
 * cannot be added without being documented.
 */
import type { ServiceName } from '@stack/contracts';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface StackConfig {
  nodeEnv: string;
  publicUrl: string;
  host: string;
  port: number;
  databaseUrl?: string;
  natsUrl?: string;
  redisUrl?: string;
  masterKeys?: string;
  internalSecret?: string;
  services: ServiceName[];
  dataDir: string;
  busPrefix: string;
  busTimeoutMs: number;
  proxyPrivateAllowlist: string[];
  trustedProxies: string[];
  logLevel: LogLevel;
  migrateOnStart: boolean;
  shutdownTimeoutMs: number;
  instanceId: string;
  otlpEndpoint?: string;
}

export interface EnvVarSpec {
  name: string;
  /** What the README says about it. */
  doc: string;
  /** Default as shown to people; `undefined` means "unset". */
  defaultText?: string;
  secret?: boolean;
}

/** Documentation of every variable, in the order the README lists them. */
export const ENV_VARS: readonly EnvVarSpec[] = [
  { name: 'STACK_PUBLIC_URL', doc: 'Public origin that fronts every service; the OAuth issuer and the MCP resource derive from it.', defaultText: 'http://localhost:$PORT' },
  { name: 'PORT', doc: 'HTTP port this process listens on.', defaultText: '8080' },
  { name: 'HOST', doc: 'Address this process binds to. Containers set 0.0.0.0.', defaultText: '127.0.0.1' },
  { name: 'DATABASE_URL', doc: 'PostgreSQL URL. Unset: an embedded Postgres (PGlite) under STACK_DATA_DIR (one-process mode only).', secret: true },
  { name: 'NATS_URL', doc: 'NATS server URL(s), comma-separated, JetStream enabled. Unset: an in-process bus (only when this process runs every service).' },
  { name: 'REDIS_URL', doc: 'Redis URL for shared short-lived state (cache, rate limits, locks). Unset: in-process cache.', secret: true },
  { name: 'STACK_MASTER_KEYS', doc: 'Key-encryption keyring, `id:base64key` entries comma-separated, first is current (32-byte keys). Unset: generated once into STACK_DATA_DIR with a warning; refused when NODE_ENV=production.', secret: true },
  { name: 'STACK_INTERNAL_SECRET', doc: 'Shared secret (base64, at least 32 bytes) that signs caller contexts on the bus. Unset: generated once into STACK_DATA_DIR; required when NATS_URL is set or NODE_ENV=production.', secret: true },
  { name: 'STACK_SERVICES', doc: 'Which services this process runs: `all` or a comma-separated subset of auth, mcp-gateway, credential-proxy, passport, skill-runner, audit.', defaultText: 'all' },
  { name: 'STACK_DATA_DIR', doc: 'Directory for embedded data (PGlite database, generated keys).', defaultText: './.stack' },
  { name: 'STACK_BUS_PREFIX', doc: 'First token of every bus subject and stream name, so deployments (and test runs) sharing a NATS never meet.', defaultText: 'stack' },
  { name: 'STACK_BUS_TIMEOUT_MS', doc: 'How long a bus request waits for its reply before failing with BUS_TIMEOUT.', defaultText: '5000' },
  { name: 'STACK_PROXY_PRIVATE_ALLOWLIST', doc: 'CIDRs of private addresses the credential proxy may reach (comma-separated). No operator can widen it.', defaultText: '(empty)' },
  { name: 'STACK_TRUSTED_PROXIES', doc: 'CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated).', defaultText: '(empty)' },
  { name: 'LOG_LEVEL', doc: 'trace, debug, info, warn, error or fatal. Logs are JSON lines on stdout.', defaultText: 'info' },
  { name: 'STACK_MIGRATE_ON_START', doc: 'Apply pending migrations at start (under an advisory lock). Set false where a Job migrates; services then wait until their schema is current.', defaultText: 'true' },
  { name: 'STACK_SHUTDOWN_TIMEOUT_MS', doc: 'On SIGTERM, how long in-flight work may take before the process closes anyway.', defaultText: '10000' },
  { name: 'STACK_INSTANCE_ID', doc: 'Name of this process in logs, metrics and bus replies.', defaultText: '<hostname>-<pid>' },
  { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', doc: 'OTLP/HTTP endpoint for traces (for example http://otel-collector:4318). Unset: traces are kept in-process only.' },
  { name: 'NODE_ENV', doc: '`production` refuses generated keys and insecure defaults.', defaultText: 'development' },
];
