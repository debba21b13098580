/**
 * Parses the environment once, at start. Every problem is collected, and the error names
 * each bad variable and what was expected, so an operator fixes them all in one go.
 */
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { resolve } from 'node:path';

import { BUS_PREFIX_PATTERN, PASSPORT_TTL, SERVICE_NAMES, isServiceName, type ServiceName } from '@stack/contracts';

import { ENV_VARS, type LogLevel, type StackConfig } from './env-schema';

export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p.variable}: ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;


const LOG_LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export function loadConfig(env: Env = process.env): StackConfig {
  const problems: { variable: string; message: string }[] = [];
  const fail = (variable: string, message: string) => problems.push({ variable, message });
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  // Show at most a short, non-secret echo of what was given.
  const shown = (name: string, v: string) => (ENV_VARS.find((s) => s.name === name)?.secret ? '(hidden)' : JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v));

  const int = (name: string, def: number, min: number, max: number): number => {
    const v = get(name);
    if (v === undefined) return def;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      fail(name, `expected a whole number from ${min} to ${max}, got ${shown(name, v)}`);
      return def;
    }
    return Number(v);
  };
  const bool = (name: string, def: boolean): boolean => {
    const v = get(name);
    if (v === undefined) return def;
    if (/^(true|1|yes)$/i.test(v)) return true;
    if (/^(false|0|no)$/i.test(v)) return false;
    fail(name, `expected true or false, got ${shown(name, v)}`);
    return def;
  };
  const url = (name: string, protocols: string[], def?: string): string | undefined => {
    const v = get(name) ?? def;
    if (v === undefined) return undefined;
    for (const part of v.split(',')) {
      let ok = false;
      try {
        ok = protocols.includes(new URL(part.trim()).protocol);
      } catch {
        ok = false;
      }
      if (!ok) {
        fail(name, `expected a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}, got ${shown(name, part.trim())}`);
        return undefined;
      }
    }
    return v;
  };
  const cidrs = (name: string): string[] => {
    const v = get(name);
    if (v === undefined) return [];
    const list = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const c of list) {
      const [addr, bits, extra] = c.split('/');
      const family = isIP(addr ?? '');
      const max = family === 6 ? 128 : 32;
      if (!family || extra !== undefined || (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > max))) {
        fail(name, `expected comma-separated CIDRs like 10.0.0.0/8 or fd00::/8, got ${shown(name, c)}`);
      }
    }
    return list;
  };

  const nodeEnv = get('NODE_ENV') ?? 'development';
  const production = nodeEnv === 'production';

  const port = int('PORT', 8080, 0, 65535);
  const publicUrlRaw = url('STACK_PUBLIC_URL', ['http:', 'https:'], `http://localhost:${port || 8080}`);
  let publicUrl = `http://localhost:${port || 8080}`;
  if (publicUrlRaw) {
    const u = new URL(publicUrlRaw);
    if (u.pathname !== '/' || u.search || u.hash) fail('STACK_PUBLIC_URL', `expected an origin with no path, query or fragment, got ${shown('STACK_PUBLIC_URL', publicUrlRaw)}`);
    publicUrl = u.origin;
    // Tokens, passwords and session cookies cross this origin: in production it must be named,
    // and plain http is accepted only where it never leaves the machine (as OAuth 2.1 allows).
    if (production && get('STACK_PUBLIC_URL') === undefined) {
      fail('STACK_PUBLIC_URL', 'required when NODE_ENV=production: the OAuth issuer and the MCP resource derive from it (the http://localhost default is for local use)');
    } else if (production && u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      fail('STACK_PUBLIC_URL', `expected an https:// origin when NODE_ENV=production (plain http only on a loopback host), got ${shown('STACK_PUBLIC_URL', publicUrlRaw)}`);
    }
  }

  const host = get('HOST') ?? '127.0.0.1';
  if (!isIP(host) && !/^[a-zA-Z0-9.-]+$/.test(host)) fail('HOST', `expected an IP address or host name, got ${shown('HOST', host)}`);

  const databaseUrl = url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const natsUrl = url('NATS_URL', ['nats:', 'tls:', 'ws:', 'wss:']);
  const redisUrl = url('REDIS_URL', ['redis:', 'rediss:']);

  const masterKeys = get('STACK_MASTER_KEYS');
  if (masterKeys !== undefined) {
    const ids = new Set<string>();
    for (const entry of masterKeys.split(',')) {
      const [id, key, extra] = entry.trim().split(':');
      const bytes = key ? Buffer.from(key, 'base64') : Buffer.alloc(0);
      if (!id || !/^[A-Za-z0-9_-]{1,32}$/.test(id) || extra !== undefined || bytes.length !== 32) {
        fail('STACK_MASTER_KEYS', 'expected comma-separated `id:base64key` entries, each key 32 bytes of base64 (value hidden)');
        break;
      }
      // Data keys name the key that wrapped them: two entries with one id leave some unopenable.
      if (ids.has(id)) {
        fail('STACK_MASTER_KEYS', `key id ${JSON.stringify(id)} appears twice: give each entry its own id (values hidden)`);
        break;
      }
      ids.add(id);
      if (production && !looksRandom(bytes)) {
        fail('STACK_MASTER_KEYS', `expected random bytes in key ${JSON.stringify(id)} when NODE_ENV=production, but it decodes to text or to a few repeated values, as placeholder and the dev overlay's keys do: generate each key with \`openssl rand -base64 32\` (value hidden)`);
        break;
      }
    }
  } else if (production) {
    fail('STACK_MASTER_KEYS', 'required when NODE_ENV=production (generated keys are for local use only)');
  }

  const internalSecret = get('STACK_INTERNAL_SECRET');
  if (internalSecret !== undefined && Buffer.from(internalSecret, 'base64').length < 32) {
    fail('STACK_INTERNAL_SECRET', 'expected at least 32 bytes of base64 (value hidden)');
  } else if (internalSecret !== undefined && production && !looksRandom(Buffer.from(internalSecret, 'base64'))) {
    fail('STACK_INTERNAL_SECRET', "expected random bytes when NODE_ENV=production, but it decodes to text or to a few repeated values, as placeholder and the dev overlay's secrets do: generate it with `openssl rand -base64 48` (value hidden)");
  } else if (internalSecret === undefined && (production || natsUrl)) {
    fail('STACK_INTERNAL_SECRET', 'required when NATS_URL is set or NODE_ENV=production: every process must share it to verify caller contexts');
  }

  let services: ServiceName[] = [...SERVICE_NAMES];
  const servicesRaw = get('STACK_SERVICES');
  if (servicesRaw !== undefined && servicesRaw !== 'all') {
    const list = servicesRaw.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = list.filter((s) => !isServiceName(s));
    if (bad.length || list.length === 0) {
      fail('STACK_SERVICES', `expected 'all' or a comma-separated subset of ${SERVICE_NAMES.join(', ')}; unknown: ${bad.map((b) => JSON.stringify(b)).join(', ') || '(empty)'}`);
    } else {
      services = SERVICE_NAMES.filter((s) => list.includes(s));
    }
  }
  if (!natsUrl && services.length !== SERVICE_NAMES.length) {
    fail('NATS_URL', `required when STACK_SERVICES runs a subset (${services.join(', ')}): the in-process bus only reaches services in this process`);
  }
  if (!databaseUrl && services.length !== SERVICE_NAMES.length) {
    fail('DATABASE_URL', 'required when STACK_SERVICES runs a subset: the embedded Postgres serves one process only');
  }

  const busPrefix = get('STACK_BUS_PREFIX') ?? 'stack';
  if (!BUS_PREFIX_PATTERN.test(busPrefix)) fail('STACK_BUS_PREFIX', `expected 1-64 letters, digits, '_' or '-', got ${shown('STACK_BUS_PREFIX', busPrefix)}`);

  const logLevel = (get('LOG_LEVEL') ?? 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) fail('LOG_LEVEL', `expected one of ${LOG_LEVELS.join(', ')}, got ${shown('LOG_LEVEL', logLevel)}`);

  const otlpEndpoint = url('OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']);

  let mcpRateLimit = { capacity: 120, refillPerSecond: 20 };
  const rate = get('STACK_MCP_RATE_LIMIT');
  if (rate !== undefined) {
    const m = /^(\d+):(\d+(?:\.\d+)?)$/.exec(rate);
    if (!m || Number(m[1]) < 1 || Number(m[2]) <= 0) fail('STACK_MCP_RATE_LIMIT', `expected burst:per_second such as 120:20, got ${shown('STACK_MCP_RATE_LIMIT', rate)}`);
    else mcpRateLimit = { capacity: Number(m[1]), refillPerSecond: Number(m[2]) };
  }

  const bootstrapOwnerEmail = get('STACK_BOOTSTRAP_OWNER_EMAIL');
  const bootstrapOwnerPassword = get('STACK_BOOTSTRAP_OWNER_PASSWORD');
  if (bootstrapOwnerEmail !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(bootstrapOwnerEmail)) fail('STACK_BOOTSTRAP_OWNER_EMAIL', `expected an email address, got ${shown('STACK_BOOTSTRAP_OWNER_EMAIL', bootstrapOwnerEmail)}`);
  if (bootstrapOwnerEmail !== undefined && (bootstrapOwnerPassword === undefined || bootstrapOwnerPassword.length < 10)) {
    fail('STACK_BOOTSTRAP_OWNER_PASSWORD', 'expected at least 10 characters when STACK_BOOTSTRAP_OWNER_EMAIL is set (value hidden)');
  }

  const serviceBaseUrls: Record<string, string> = {};
  for (const pair of (get('STACK_SERVICE_BASE_URLS') ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    const id = pair.slice(0, eq);
    let ok = eq > 0 && /^[a-z][a-z0-9_-]{0,63}$/.test(id);
    try {
      ok = ok && ['http:', 'https:'].includes(new URL(pair.slice(eq + 1)).protocol);
    } catch {
      ok = false;
    }
    if (!ok) fail('STACK_SERVICE_BASE_URLS', `expected comma-separated id=url pairs such as github=https://api.github.com, got ${shown('STACK_SERVICE_BASE_URLS', pair)}`);
    else serviceBaseUrls[id] = pair.slice(eq + 1);
  }
  const upstreamOAuthClients: Record<string, { clientId: string; clientSecret: string }> = {};
  for (const pair of (get('STACK_UPSTREAM_OAUTH_CLIENTS') ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([a-z][a-z0-9_-]{0,63})=([^:]+):(.+)$/.exec(pair);
    if (!m) fail('STACK_UPSTREAM_OAUTH_CLIENTS', 'expected comma-separated id=client_id:client_secret pairs (value hidden)');
    else upstreamOAuthClients[m[1]!] = { clientId: m[2]!, clientSecret: m[3]! };
  }

  const authSignup = (get('STACK_AUTH_SIGNUP') ?? 'invite-only') as NonNullable<StackConfig['authSignup']>;
  if (!['open', 'invite-only', 'closed'].includes(authSignup)) fail('STACK_AUTH_SIGNUP', `expected open, invite-only or closed, got ${shown('STACK_AUTH_SIGNUP', authSignup)}`);

  const config: StackConfig = {
    nodeEnv,
    publicUrl,
    host,
    port,
    databaseUrl,
    natsUrl,
    redisUrl,
    masterKeys,
    internalSecret,
    services,
    dataDir: resolve(get('STACK_DATA_DIR') ?? './.stack'),
    busPrefix,
    busTimeoutMs: int('STACK_BUS_TIMEOUT_MS', 5000, 10, 600_000),
    streamReplicas: int('STACK_STREAM_REPLICAS', 1, 1, 5),
    proxyPrivateAllowlist: cidrs('STACK_PROXY_PRIVATE_ALLOWLIST'),
    serviceBaseUrls,
    proxyTimeoutMs: int('STACK_PROXY_TIMEOUT_MS', 30_000, 10, 600_000),
    dropoffSweepMs: int('STACK_DROPOFF_SWEEP_MS', 5_000, 100, 3_600_000),
    upstreamOAuthClients,
    trustedProxies: cidrs('STACK_TRUSTED_PROXIES'),
    logLevel,
    migrateOnStart: bool('STACK_MIGRATE_ON_START', true),
    shutdownTimeoutMs: int('STACK_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    instanceId: get('STACK_INSTANCE_ID') ?? `${hostname()}-${process.pid}`,
    otlpEndpoint,
    bootstrapOwnerEmail,
    bootstrapOwnerPassword,
    authSignup,
    mcpRateLimit,
    auditCheckpointIntervalMs: int('STACK_AUDIT_CHECKPOINT_INTERVAL_MS', 10_000, 100, 86_400_000),
    auditTreePeriodMs: int('STACK_AUDIT_TREE_PERIOD_MS', 30 * 86_400_000, 1000, 3650 * 86_400_000),
    auditRetentionMs: int('STACK_AUDIT_RETENTION_MS', 0, 0, 36500 * 86_400_000),
    revocationMaxStalenessMs: int('STACK_REVOCATION_MAX_STALENESS', 30, 1, 3600) * 1000,
    passportKeyRotationMs: int('STACK_PASSPORT_KEY_ROTATION_SECONDS', 604_800, 60, 31_536_000) * 1000,
    // At least the longest TTL, so a fresh passport is never cut at issue; at most 30 days.
    passportMaxLifetimeMs: int('STACK_PASSPORT_MAX_LIFETIME_SECONDS', 86_400, PASSPORT_TTL.maxSeconds, 30 * 86_400) * 1000,
  };
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/** Loopback names and addresses: what OAuth 2.1 lets go over plain http. */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * Whether key material looks generated rather than typed: 32 random bytes are all printable
 * ASCII with odds of about 10^-14 and show about 30 distinct values, so bytes that are all text
 * (a base64-encoded passphrase, the dev overlay's keys) or fewer than 16 distinct values (an
 * all-zero placeholder) were not drawn from a random source.
 */
function looksRandom(bytes: Uint8Array): boolean {
  return !bytes.every((b) => b >= 0x20 && b <= 0x7e) && new Set(bytes).size >= 16;
}

/** Values that must never reach a log line, error or response. */
export function secretValues(config: StackConfig): string[] {
  const out: string[] = [];
  if (config.masterKeys) out.push(...config.masterKeys.split(',').map((e) => e.split(':')[1] ?? '').filter(Boolean));
  if (config.internalSecret) out.push(config.internalSecret);
  for (const client of Object.values(config.upstreamOAuthClients ?? {})) out.push(client.clientSecret);
  if (config.bootstrapOwnerPassword) out.push(config.bootstrapOwnerPassword);
  for (const u of [config.databaseUrl, config.redisUrl, config.natsUrl]) {
    if (!u) continue;
    for (const part of u.split(',')) {
      try {
        const parsed = new URL(part);
        if (parsed.password) out.push(decodeURIComponent(parsed.password), parsed.password);
      } catch {
        /* validated already */
      }
    }
  }
  return [...new Set(out.filter((s) => s.length >= 4))];
}

/** True when this process runs every service (the one-process shape). */
export function runsAllServices(config: StackConfig): boolean {
  return config.services.length === SERVICE_NAMES.length;
}
