/**
 * What `/readyz` tells the caller, and what it tells the log. The port answering it is reachable by
 * anyone who reaches the service (a directly exposed container, say), so the answer carries only
 * what a probe needs — the status code, and per check whether it passed — and never a dependency's
 * error text (which names hosts, addresses, users) or the instance id. The error text goes to the
 * log, rate-limited per check, so a dependency that stays down while a kubelet polls every second
 * writes one line a minute, not one a second.
 *
 * `?peers=1` (each service pings every other over the bus) is served from a shared sweep: callers
 * that arrive while one runs wait for it, and a new one starts at most about once a second (a
 * small burst aside), so no rate of requests turns into more bus traffic than that.
 */
import type { BusConnection } from '@stack/bus';
import { SYSTEM_COMMANDS, isServiceName } from '@stack/contracts';
import type { HealthRegistry, StackLogger } from '@stack/observability';

/** One check as a caller of /readyz sees it. */
export interface PublicCheck {
  ok: boolean;
  /** Present (false) only for a check whose failure does not make the process unready. */
  critical?: false;
}

export interface PublicPeer {
  service: string;
  ok: boolean;
  rtt_ms?: number;
}

/** One service of this process and what it reached. */
export interface PublicPeerReport {
  service: string;
  ok: boolean;
  peers: PublicPeer[];
}

/**
 * Logs a failing condition once, then at most once per `intervalMs` while it keeps failing (with how
 * many failures were not logged in between), and once more when it recovers.
 */
export class FailureLog {
  private readonly failing = new Map<string, { loggedAt: number; suppressed: number }>();

  constructor(
    private readonly logger: StackLogger,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  failed(key: string, error: string, message: string, fields: Record<string, unknown> = {}): void {
    const t = this.now();
    const state = this.failing.get(key);
    if (state && t - state.loggedAt < this.intervalMs) {
      state.suppressed++;
      return;
    }
    this.logger.warn({ ...fields, error, ...(state ? { failures_not_logged: state.suppressed } : {}) }, message);
    this.failing.set(key, { loggedAt: t, suppressed: 0 });
  }

  passed(key: string, message: string, fields: Record<string, unknown> = {}): void {
    if (!this.failing.delete(key)) return;
    this.logger.info(fields, message);
  }
}

export interface ReadinessOptions {
  /** How often a check that keeps failing is logged again (default 60 s). */
  logIntervalMs?: number;
  /** Peer sweeps that may start back to back before the one-per-interval pace applies (default 3). */
  peerSweepBurst?: number;
  /** One peer sweep may start per this interval once the burst is spent (default 1000 ms). */
  peerSweepIntervalMs?: number;
  now?: () => number;
}

interface RawPeerReply {
  service?: string;
  peers?: { service: string; ok: boolean; error?: string; rtt_ms?: number }[];
}

export class Readiness {
  private readonly log: FailureLog;
  private readonly now: () => number;
  private readonly burst: number;
  private readonly intervalMs: number;
  private tokens: number;
  private refilledAt: number;
  private running?: Promise<PublicPeerReport[]>;
  private last?: PublicPeerReport[];

  constructor(
    private readonly health: HealthRegistry,
    private readonly bus: BusConnection,
    private readonly services: () => string[],
    logger: StackLogger,
    options: ReadinessOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.log = new FailureLog(logger, options.logIntervalMs ?? 60_000, this.now);
    this.burst = options.peerSweepBurst ?? 3;
    this.intervalMs = options.peerSweepIntervalMs ?? 1000;
    this.tokens = this.burst;
    this.refilledAt = this.now();
  }

  /** Runs the checks; the answer holds no error text, the log does. */
  async check(): Promise<{ ok: boolean; checks: Record<string, PublicCheck> }> {
    const report = await this.health.check();
    const checks: Record<string, PublicCheck> = {};
    for (const [name, result] of Object.entries(report.checks)) {
      checks[name] = result.critical ? { ok: result.ok } : { ok: result.ok, critical: false };
      if (result.ok) this.log.passed(`check:${name}`, 'readiness check passes again', { check: name });
      else this.log.failed(`check:${name}`, result.error ?? 'failed', 'readiness check failing', { check: name, critical: result.critical, ms: result.ms });
    }
    return { ok: report.ok, checks };
  }

  /** The latest peer sweep: the running one if any, else a new one if the pace allows, else the last. */
  peers(): Promise<PublicPeerReport[]> {
    if (this.running) return this.running;
    if (!this.takeToken() && this.last) return Promise.resolve(this.last);
    // sweep() catches per service; the second branch only keeps a bug from sticking the cache.
    const sweep = this.sweep().then(
      (result) => (this.last = result),
      () => (this.last ??= []),
    );
    this.running = sweep.finally(() => (this.running = undefined));
    return this.running;
  }

  private takeToken(): boolean {
    const t = this.now();
    const earned = Math.floor((t - this.refilledAt) / this.intervalMs);
    if (earned > 0) {
      this.tokens = Math.min(this.burst, this.tokens + earned);
      this.refilledAt = this.tokens === this.burst ? t : this.refilledAt + earned * this.intervalMs;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  private async sweep(): Promise<PublicPeerReport[]> {
    return Promise.all(
      this.services()
        .filter(isServiceName)
        .map(async (service): Promise<PublicPeerReport> => {
          let reply: RawPeerReply;
          try {
            reply = (await this.bus.forService(service).request(SYSTEM_COMMANDS[service].pingPeers, { timeout_ms: 1500 }, { timeoutMs: 3000 })) as RawPeerReply;
          } catch (err) {
            this.log.failed(`peers:${service}`, (err as Error).message, 'peer sweep: service did not answer', { target: service });
            return { service, ok: false, peers: [] };
          }
          this.log.passed(`peers:${service}`, 'peer sweep: service answers again', { target: service });
          const peers = (reply.peers ?? []).map((p): PublicPeer => {
            const key = `peers:${service}->${p.service}`;
            if (p.ok) this.log.passed(key, 'peer sweep: peer reachable again', { from: service, to: p.service });
            else this.log.failed(key, p.error ?? 'unreachable', 'peer sweep: peer unreachable', { from: service, to: p.service });
            return p.rtt_ms === undefined ? { service: p.service, ok: p.ok } : { service: p.service, ok: p.ok, rtt_ms: p.rtt_ms };
          });
          return { service, ok: true, peers };
        }),
    );
  }
}
