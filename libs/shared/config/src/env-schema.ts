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
  /** STACK_STREAM_REPLICAS: JetStream replicas per stream. */
  streamReplicas: number;
  proxyPrivateAllowlist: string[];
  /** STACK_SERVICE_BASE_URLS: catalog id → base URL override (credential proxy). */
  serviceBaseUrls: Record<string, string>;
  /** STACK_PROXY_TIMEOUT_MS: how long the proxy waits for an upstream. */
  proxyTimeoutMs: number;
  /** STACK_DROPOFF_SWEEP_MS: how often expired drop-offs are purged. */
  dropoffSweepMs: number;
  /** STACK_UPSTREAM_OAUTH_CLIENTS: catalog id → STACK's OAuth client at that provider. */
  upstreamOAuthClients: Record<string, { clientId: string; clientSecret: string }>;
  trustedProxies: string[];
  logLevel: LogLevel;
  migrateOnStart: boolean;
  shutdownTimeoutMs: number;
  instanceId: string;
  otlpEndpoint?: string;
  /** First owner created on start when no member exists yet (auth). */
  bootstrapOwnerEmail?: string;
  bootstrapOwnerPassword?: string;
  /** Who may create an operator or join one (auth). */
  authSignup?: 'open' | 'invite-only' | 'closed';
  /** Token bucket per member and per agent on /mcp. */
  mcpRateLimit: { capacity: number; refillPerSecond: number };
  /** STACK_AUDIT_CHECKPOINT_INTERVAL_MS. */
  auditCheckpointIntervalMs: number;
  /** STACK_AUDIT_TREE_PERIOD_MS. */
  auditTreePeriodMs: number;
  /** STACK_AUDIT_RETENTION_MS (0: never drop). */
  auditRetentionMs: number;
  /** STACK_REVOCATION_MAX_STALENESS, in ms. */
  revocationMaxStalenessMs: number;
  /** STACK_PASSPORT_KEY_ROTATION_SECONDS, in ms. */
  passportKeyRotationMs: number;
  /** STACK_PASSPORT_MAX_LIFETIME_SECONDS, in ms: how long after a root passport's issue its refresh lineage may last. */
  passportMaxLifetimeMs: number;
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
  { name: 'STACK_PUBLIC_URL', doc: 'Public origin that fronts every service; the OAuth issuer and the MCP resource derive from it. Required when NODE_ENV=production, and https there unless its host is loopback (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`).', defaultText: 'http://localhost:$PORT' },
  { name: 'PORT', doc: 'HTTP port this process listens on.', defaultText: '8080' },
  { name: 'HOST', doc: 'Address this process binds to. Containers set 0.0.0.0.', defaultText: '127.0.0.1' },
  { name: 'DATABASE_URL', doc: 'PostgreSQL URL. Unset: an embedded Postgres (PGlite) under STACK_DATA_DIR (one-process mode only).', secret: true },
  { name: 'NATS_URL', doc: 'NATS server URL(s), comma-separated, JetStream enabled; `nats://user:password@host:4222` carries this service’s NATS user. Unset: an in-process bus (only when this process runs every service).', secret: true },
  { name: 'REDIS_URL', doc: 'Redis URL for shared short-lived state (cache, rate limits, locks). Unset: in-process cache.', secret: true },
  { name: 'STACK_MASTER_KEYS', doc: 'Key-encryption keyring, `id:base64key` entries comma-separated, first is current (32-byte keys, each id once). Unset: generated once into STACK_DATA_DIR with a warning; refused when NODE_ENV=production, as are keys that are not random bytes (text, a few repeated values): generate them with `openssl rand -base64 32`.', secret: true },
  { name: 'STACK_INTERNAL_SECRET', doc: 'Shared secret (base64, at least 32 bytes) that signs caller contexts on the bus. Unset: generated once into STACK_DATA_DIR; required when NATS_URL is set or NODE_ENV=production, and random bytes there (`openssl rand -base64 48`).', secret: true },
  { name: 'STACK_SERVICES', doc: 'Which services this process runs: `all` or a comma-separated subset of auth, mcp-gateway, credential-proxy, passport, skill-runner, audit.', defaultText: 'all' },
  { name: 'STACK_DATA_DIR', doc: 'Directory for embedded data (PGlite database, generated keys in `generated-keys.json`). Private to the user STACK runs as: created 0700, the key file 0600; an existing one open to others is made 0700 if it holds only STACK\'s data, else start-up stops (give STACK a directory of its own).', defaultText: './.stack' },
  { name: 'STACK_BUS_PREFIX', doc: 'First token of every bus subject and stream name, so deployments (and test runs) sharing a NATS never meet.', defaultText: 'stack' },
  { name: 'STACK_STREAM_REPLICAS', doc: 'JetStream replicas of each durable stream (STACK_EVENTS, STACK_AUDIT, STACK_REVOCATIONS): 3 on a three-node NATS cluster.', defaultText: '1' },
  { name: 'STACK_BUS_TIMEOUT_MS', doc: 'How long a bus request waits for its reply before failing with BUS_TIMEOUT.', defaultText: '5000' },
  { name: 'STACK_PROXY_PRIVATE_ALLOWLIST', doc: 'CIDRs of private addresses the credential proxy (and auth, fetching client metadata documents) may reach (comma-separated). No operator can widen it.', defaultText: '(empty)' },
  { name: 'STACK_SERVICE_BASE_URLS', doc: 'Base URL overrides of catalog services for the credential proxy, as `id=url` pairs comma-separated (for example `github=https://github.example.com/api/v3`); the override also becomes the service’s only allowed host.', defaultText: '(empty)' },
  { name: 'STACK_PROXY_TIMEOUT_MS', doc: 'How long the credential proxy waits for an upstream answer before UPSTREAM_TIMEOUT.', defaultText: '30000' },
  { name: 'STACK_DROPOFF_SWEEP_MS', doc: 'How often the passport service purges expired drop-offs (their ciphertext is also refused at read time, whatever the interval).', defaultText: '5000' },
  { name: 'STACK_UPSTREAM_OAUTH_CLIENTS', doc: 'STACK’s own OAuth client at each upstream provider, as `id=client_id:client_secret` pairs comma-separated (for example `github=Iv1.abc:s3cr3t`); needed to connect that service with OAuth.', secret: true },
  { name: 'STACK_TRUSTED_PROXIES', doc: 'CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated).', defaultText: '(empty)' },
  { name: 'LOG_LEVEL', doc: 'trace, debug, info, warn, error or fatal. Logs are JSON lines on stdout.', defaultText: 'info' },
  { name: 'STACK_MIGRATE_ON_START', doc: 'Apply pending migrations at start (under an advisory lock). Set false where a Job migrates; services then wait until their schema is current.', defaultText: 'true' },
  { name: 'STACK_SHUTDOWN_TIMEOUT_MS', doc: 'On SIGTERM, how long in-flight work may take before the process closes anyway.', defaultText: '10000' },
  { name: 'STACK_INSTANCE_ID', doc: 'Name of this process in logs, metrics and bus replies.', defaultText: '<hostname>-<pid>' },
  { name: 'STACK_MCP_RATE_LIMIT', doc: 'Rate limit on /mcp per member and per agent, as `burst:per_second` (token bucket; beyond it RATE_LIMITED with Retry-After).', defaultText: '120:20' },
  { name: 'STACK_AUDIT_CHECKPOINT_INTERVAL_MS', doc: 'How often the audit service signs a checkpoint of every operator log that grew (milliseconds).', defaultText: '10000' },
  { name: 'STACK_AUDIT_TREE_PERIOD_MS', doc: 'How long an operator\'s audit tree stays open; then it is closed (its last checkpoint signed) and a new tree starts (milliseconds).', defaultText: '2592000000 (30 days)' },
  { name: 'STACK_AUDIT_RETENTION_MS', doc: 'How long after closing a whole audit tree is dropped (its last checkpoint is kept). 0 keeps every tree.', defaultText: '0' },
  { name: 'STACK_REVOCATION_MAX_STALENESS', doc: 'Seconds a node may go without applying the revocation stream up to a fresh heartbeat; past it the node refuses every passport and token with 503 REVOCATION_STATE_STALE and /readyz fails.', defaultText: '30' },
  { name: 'STACK_PASSPORT_KEY_ROTATION_SECONDS', doc: 'How often the passport signing key is rotated (seconds). Retired keys stay in the JWKS until the passports they signed have expired.', defaultText: '604800' },
  { name: 'STACK_PASSPORT_MAX_LIFETIME_SECONDS', doc: 'Absolute lifetime of a refresh lineage (seconds, 3600 to 2592000): a passport refreshed from another, however often, never expires later than this long after the first of the line was issued. A refresh asking for more gets what is left; once nothing is left it fails with PASSPORT_EXPIRED and a new passport must be issued.', defaultText: '86400' },
  { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', doc: 'OTLP/HTTP endpoint for traces (for example http://otel-collector:4318). Unset: traces are kept in-process only.' },
  { name: 'STACK_BOOTSTRAP_OWNER_EMAIL', doc: 'Email of the first owner, created (with a new operator) when auth starts and no member exists yet. Needs STACK_BOOTSTRAP_OWNER_PASSWORD.' },
  { name: 'STACK_BOOTSTRAP_OWNER_PASSWORD', doc: 'Password of that first owner (at least 10 characters). Only read while no member exists.', secret: true },
  { name: 'STACK_AUTH_SIGNUP', doc: '`open` (anyone may create a team on /login/signup), `invite-only` (members join by invitation) or `closed` (no sign-up, no invitations: owners come from `stack admin create-owner`).', defaultText: 'invite-only' },
  { name: 'NODE_ENV', doc: '`production` refuses generated keys, key material that is not random, and a STACK_PUBLIC_URL that is unset or plain http off loopback.', defaultText: 'development' },
];
