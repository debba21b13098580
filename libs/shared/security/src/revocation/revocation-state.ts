/**
 * A node's revocation state (DESIGN.md §4), hosted by every process that checks credentials:
 * it loads a snapshot with its STACK_REVOCATIONS sequence, replays the stream from there, and
 * stays *fresh* only while it has applied everything up to a heartbeat younger than the
 * staleness bound. A stale node refuses every credential (503 REVOCATION_STATE_STALE), so a
 * node cut off from the bus cannot go on honouring a revoked passport. Applying a revocation
 * aborts the in-flight calls it kills.
 *
 * The transport is behind `RevocationFeed`, so this class knows nothing of NATS (the runtime
 * adapts its bus to it) and tests drive it by hand.
 */
import { StackError } from '@stack/contracts';

import { InFlightRegistry } from './in-flight-registry';
import { RevocationSet, type CredentialSubject, type RevocationEntry } from './revocation-set';

export type RevocationFeedMessage = { type: 'revocation'; seq: number; entry: RevocationEntry } | { type: 'heartbeat'; seq: number; at_ms: number; last_seq: number };

export interface RevocationSnapshotData {
  /** Entries are complete up to this stream sequence: replay starts after it. */
  seq: number;
  entries: readonly RevocationEntry[];
}

export interface RevocationFeed {
  /** The stream's last sequence now. */
  lastSequence(): Promise<number>;
  snapshot(): Promise<RevocationSnapshotData>;
  /** Delivers every stream message from `fromSeq` on, in order, until stopped. */
  follow(fromSeq: number, onMessage: (message: RevocationFeedMessage) => void): Promise<{ stop(): Promise<void> }>;
}

export interface RevocationStateLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface RevocationStateOptions {
  feed: RevocationFeed;
  /** STACK_REVOCATION_MAX_STALENESS, in ms. */
  maxStalenessMs: number;
  now?: () => number;
  logger?: RevocationStateLogger;
  /** How often freshness is re-examined (and a stale node re-bootstraps); default min(1 s, bound / 3). */
  watchdogMs?: number;
  pruneEveryMs?: number;
}

export interface RevocationStatus {
  fresh: boolean;
  loaded: boolean;
  applied_seq: number;
  fresh_as_of_ms: number | null;
  stale_for_ms: number;
  entries: number;
  in_flight: number;
}

type Listener = (entry: RevocationEntry) => void;

export class RevocationState {
  readonly set = new RevocationSet();
  readonly inFlight = new InFlightRegistry();
  private readonly feed: RevocationFeed;
  private readonly maxStalenessMs: number;
  private readonly now: () => number;
  private readonly logger?: RevocationStateLogger;
  private readonly watchdogMs: number;
  private readonly pruneEveryMs: number;
  private readonly listeners = new Set<Listener>();
  /** Sequences the node must reach to be fresh as of a moment: heartbeats, and the stream end seen at a bootstrap. */
  private marks: { seq: number; atMs: number }[] = [];
  private appliedSeq = 0;
  private freshAsOfMs = Number.NEGATIVE_INFINITY;
  private loaded = false;
  private stopped = true;
  private follower?: { stop(): Promise<void> };
  private bootstrapping?: Promise<void>;
  private lastBootstrapAt = 0;
  private timers: NodeJS.Timeout[] = [];
  private freshWaiters = new Set<() => void>();

  constructor(options: RevocationStateOptions) {
    this.feed = options.feed;
    this.maxStalenessMs = options.maxStalenessMs;
    this.now = options.now ?? Date.now;
    this.logger = options.logger;
    this.watchdogMs = options.watchdogMs ?? Math.max(50, Math.min(1000, Math.floor(options.maxStalenessMs / 3)));
    this.pruneEveryMs = options.pruneEveryMs ?? 60_000;
  }

  /** Starts loading in the background: the node is stale (refuses everything) until it has caught up. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.bootstrap();
    this.timers.push(setInterval(() => this.watchdog(), this.watchdogMs).unref());
    this.timers.push(setInterval(() => this.set.prune(this.now()), this.pruneEveryMs).unref());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.bootstrapping?.catch(() => undefined);
    await this.follower?.stop().catch(() => undefined);
    this.follower = undefined;
    for (const w of this.freshWaiters) w();
  }

  /** Applies one entry (from the stream, a snapshot, or the revoking service right after its commit). */
  apply(entry: RevocationEntry): boolean {
    if (entry.expires_at_ms < this.now()) return false;
    const changed = this.set.add(entry);
    // Abort even when the entry was known: a call may have registered between two deliveries.
    this.inFlight.abortMatching(entry);
    if (changed) for (const l of this.listeners) l(entry);
    return changed;
  }

  /** Called for every entry newly applied (cache invalidation, say). */
  onRevoked(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  isFresh(now = this.now()): boolean {
    return now - this.freshAsOfMs <= this.maxStalenessMs;
  }

  status(): RevocationStatus {
    const now = this.now();
    return {
      fresh: this.isFresh(now),
      loaded: this.loaded,
      applied_seq: this.appliedSeq,
      fresh_as_of_ms: Number.isFinite(this.freshAsOfMs) ? this.freshAsOfMs : null,
      stale_for_ms: Number.isFinite(this.freshAsOfMs) ? Math.max(0, now - this.freshAsOfMs - this.maxStalenessMs) : -1,
      entries: this.set.size,
      in_flight: this.inFlight.size,
    };
  }

  /** Throws 503 REVOCATION_STATE_STALE unless fresh. */
  assertFresh(): void {
    if (this.isFresh()) return;
    const s = this.status();
    throw new StackError('REVOCATION_STATE_STALE', 'this node cannot vouch that the credential is not revoked: its revocation state is stale', {
      fresh_as_of: s.fresh_as_of_ms === null ? null : new Date(s.fresh_as_of_ms).toISOString(),
      max_staleness_ms: this.maxStalenessMs,
    });
  }

  /** The entry that kills the credential, if any (no freshness check). */
  revocationOf(subject: CredentialSubject): RevocationEntry | undefined {
    return this.set.match(subject);
  }

  /** Fresh and not revoked, or throws REVOCATION_STATE_STALE / PASSPORT_REVOKED. */
  check(subject: CredentialSubject): void {
    this.assertFresh();
    const hit = this.set.match(subject);
    if (hit) throw new StackError('PASSPORT_REVOKED', 'the credential has been revoked', { revocation_id: hit.id, kind: hit.kind });
  }

  /** The live entries and the sequence they are complete up to, for a peer's snapshot. */
  snapshot(): RevocationSnapshotData & { fresh: boolean } {
    return { seq: this.appliedSeq, entries: this.set.entries(), fresh: this.isFresh() };
  }

  /** Resolves true once fresh, false after `timeoutMs` or on stop. */
  whenFresh(timeoutMs: number): Promise<boolean> {
    if (this.isFresh()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.freshWaiters.delete(done);
        resolve(this.isFresh());
      };
      const timer = setTimeout(done, timeoutMs);
      this.freshWaiters.add(done);
    });
  }

  /** Feed messages come through here (public so tests and in-process hosts can drive it). */
  receive(message: RevocationFeedMessage): void {
    if (message.type === 'revocation') {
      this.apply(message.entry);
    } else {
      // The publisher's clock, but never later than ours: a replayed old heartbeat cannot make us look fresher than we are.
      this.marks.push({ seq: message.last_seq, atMs: Math.min(message.at_ms, this.now()) });
    }
    if (message.seq > this.appliedSeq) this.appliedSeq = message.seq;
    this.settleMarks();
  }

  private settleMarks(): void {
    if (!this.marks.length) return;
    const before = this.freshAsOfMs;
    this.marks = this.marks.filter((m) => {
      if (m.seq > this.appliedSeq) return true;
      if (m.atMs > this.freshAsOfMs) this.freshAsOfMs = m.atMs;
      return false;
    });
    if (this.freshAsOfMs !== before && this.isFresh()) for (const w of [...this.freshWaiters]) w();
  }

  private bootstrap(): Promise<void> {
    this.bootstrapping ??= (async () => {
      let delay = 200;
      while (!this.stopped) {
        this.lastBootstrapAt = this.now();
        try {
          const startedAt = this.now();
          const last = await this.feed.lastSequence();
          const snap = await this.feed.snapshot();
          for (const e of snap.entries) this.apply(e);
          const old = this.follower;
          this.follower = undefined;
          await old?.stop().catch(() => undefined);
          if (this.stopped) return;
          this.appliedSeq = Math.max(this.appliedSeq, snap.seq);
          this.marks.push({ seq: last, atMs: startedAt });
          this.settleMarks();
          this.follower = await this.feed.follow(snap.seq + 1, (m) => this.receive(m));
          if (this.stopped) {
            await this.follower.stop().catch(() => undefined);
            return;
          }
          this.loaded = true;
          this.logger?.info({ seq: snap.seq, entries: snap.entries.length, last_seq: last }, 'revocation state loaded from a snapshot; replaying the stream after it');
          return;
        } catch (err) {
          this.logger?.warn({ err: (err as Error).message, retry_ms: delay }, 'revocation snapshot failed; retrying (the node refuses credentials meanwhile)');
          await new Promise((r) => setTimeout(r, delay).unref());
          delay = Math.min(delay * 2, 2000);
        }
      }
    })().finally(() => {
      this.bootstrapping = undefined;
    });
    return this.bootstrapping;
  }

  private watchdog(): void {
    if (this.stopped || this.bootstrapping) return;
    const now = this.now();
    // Stale for a whole bound since the last bootstrap: the follower may be dead (a long cut,
    // a consumer the server dropped). Load a new snapshot and follow again.
    if (!this.isFresh(now) && now - this.lastBootstrapAt > Math.max(this.maxStalenessMs, 2000)) {
      this.logger?.warn({ applied_seq: this.appliedSeq }, 'revocation state is stale: loading a new snapshot');
      void this.bootstrap();
    }
  }
}
