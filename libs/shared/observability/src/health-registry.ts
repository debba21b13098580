/**
 * Readiness checks: each dependency (database, bus, cache, revocation state) registers a check, and
 * `/readyz` runs them all at once, each bounded by a timeout, so one hanging dependency makes the
 * answer "not ready" instead of making the probe itself hang.
 */
export type HealthCheck = () => Promise<void> | void;

export interface HealthCheckOptions {
  /** A failing critical check makes the whole report not ok (default true). */
  critical?: boolean;
  /** Overrides the registry's timeout for this check. */
  timeoutMs?: number;
}

export interface HealthCheckResult {
  ok: boolean;
  critical: boolean;
  error?: string;
  ms: number;
}

export interface HealthReport {
  ok: boolean;
  checks: Record<string, HealthCheckResult>;
}

export interface HealthRegistryOptions {
  /** Default per-check timeout (default 2000 ms). */
  timeoutMs?: number;
}

interface Registered {
  check: HealthCheck;
  critical: boolean;
  timeoutMs: number;
}

export class HealthRegistry {
  private readonly checks = new Map<string, Registered>();
  private readonly timeoutMs: number;

  constructor(options: HealthRegistryOptions = {}) {
    this.timeoutMs = validTimeout(options.timeoutMs ?? 2000, 'timeoutMs');
  }

  /** Adds a check; a name registered twice is a programming error. */
  register(name: string, check: HealthCheck, options: HealthCheckOptions = {}): void {
    if (this.checks.has(name)) throw new Error(`HealthRegistry: a check named "${name}" is already registered`);
    this.checks.set(name, {
      check,
      critical: options.critical ?? true,
      timeoutMs: validTimeout(options.timeoutMs ?? this.timeoutMs, `timeoutMs of "${name}"`),
    });
  }

  unregister(name: string): boolean {
    return this.checks.delete(name);
  }

  names(): string[] {
    return [...this.checks.keys()];
  }

  /** Runs every check concurrently; ok when every critical check passed. */
  async check(): Promise<HealthReport> {
    const entries = await Promise.all([...this.checks].map(async ([name, registered]) => [name, await runOne(registered)] as const));
    const checks: Record<string, HealthCheckResult> = {};
    let ok = true;
    for (const [name, result] of entries) {
      checks[name] = result;
      if (!result.ok && result.critical) ok = false;
    }
    return { ok, checks };
  }
}

async function runOne({ check, critical, timeoutMs }: Registered): Promise<HealthCheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    // Promise.resolve().then(): a check that throws synchronously is a failure, not a crash.
    await Promise.race([Promise.resolve().then(check), timeout]);
    return { ok: true, critical, ms: elapsed(started) };
  } catch (err) {
    return { ok: false, critical, error: err instanceof Error ? err.message : String(err), ms: elapsed(started) };
  } finally {
    clearTimeout(timer);
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

function validTimeout(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`HealthRegistry: ${what} must be a positive number of milliseconds (got ${value})`);
  return value;
}
