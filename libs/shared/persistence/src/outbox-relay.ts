/**
 * Publishes a service's outbox to the bus: reads unsent rows in `seq` order, publishes them
 * (a batch at a time, waiting for the stream's acknowledgements) and marks them sent. Crashes lose nothing: a row
 * is marked only after its acknowledgement, so a relay killed at any point publishes the row
 * again after restart, with the same id.
 *
 * At-least-once, on purpose. A relay that crashes between the acknowledgement and the mark,
 * or several relays on one table (replicas of a service), may publish a row twice. That is
 * harmless: the row id is the message id, JetStream drops a second publish with the same id
 * inside its duplicate window, and consumers deduplicate by it too (claimMessage). Locking
 * rows instead (SELECT … FOR UPDATE SKIP LOCKED) would mean holding a transaction open while
 * awaiting the bus, which the embedded Postgres — one transaction at a time for the whole
 * process — turns into a deadlock. So every statement here is a short autocommit one.
 *
 * Rows commit in an order that need not match `seq` (a transaction may take its `seq` and
 * commit after a later one); the relay scans for `sent_at IS NULL`, not "after the last seq",
 * so a late commit is still picked up, just published after the row that overtook it.
 */
import { ROOT_CONTEXT, context, propagation } from '@opentelemetry/api';
import type { Bus } from '@stack/bus';
import { ALL_EVENT_DEFS, StackError, type EventDef, type PayloadOf } from '@stack/contracts';
import type { DataSource } from 'typeorm';

import { eventKey } from './outbox';
import { clearRunningRelay, setRunningRelay } from './outbox-nudge';
import { SILENT_LOGGER, errorMessage, type PersistenceLogger } from './persistence-logger';
import { qualifiedTable, runStatement, schemaOf } from './sql';

export interface OutboxRelayOptions {
  dataSource: DataSource;
  /** Publishes as the data source's service. */
  bus: Pick<Bus, 'publish'>;
  /** Events this relay may publish (default: every event in the contracts). Rows of other events stay unsent. */
  events?: readonly EventDef[];
  /** Pause between rounds when idle; default 1000 ms. notify() starts a round at once. */
  intervalMs?: number;
  /**
   * How soon a round follows `nudge()` (what `Outbox.withEvents` calls after its commit); default
   * 50 ms. Short enough that an event reaches the bus promptly, long enough that the writes of a
   * busy moment share one round.
   */
  nudgeDelayMs?: number;
  /**
   * Rows read per query; default 500. A round costs two statements and a wait for the one
   * embedded backend whatever its size, so the size sets how fast a relay can go: at 100 a
   * round, drop-offs at ~650 hand-offs/s (five rows each) left the relay further behind every
   * second (2.6 s of backlog after a 16 s run); at 500 it keeps up.
   */
  batchSize?: number;
  /** Longest pause after repeated failures; default 30 s. */
  maxBackoffMs?: number;
  /** Sent rows are deleted after this long; default 1 h. */
  retentionMs?: number;
  /** How often pruning runs; default 60 s. */
  pruneIntervalMs?: number;
  logger?: PersistenceLogger;
}

interface OutboxRow {
  id: string;
  seq: string;
  event: string;
  payload: unknown;
  headers: Record<string, string> | null;
}

/** Bus refusals that no retry can fix: the row is set aside (failed_at) instead of blocking the outbox. */
const PERMANENT_CODES = new Set(['INVALID_REQUEST', 'PAYLOAD_TOO_LARGE']);

export class OutboxRelay {
  private readonly dataSource: DataSource;
  private readonly bus: Pick<Bus, 'publish'>;
  private readonly events = new Map<string, EventDef>();
  private readonly intervalMs: number;
  private readonly nudgeDelayMs: number;
  private readonly batchSize: number;
  private readonly maxBackoffMs: number;
  private readonly retentionMs: number;
  private readonly pruneIntervalMs: number;
  private readonly logger: PersistenceLogger;
  private readonly table: string;
  private readonly schema: string;

  private running = false;
  private timer: NodeJS.Timeout | undefined;
  /** When the scheduled round runs (ms since the epoch). */
  private dueAt = Number.POSITIVE_INFINITY;
  /** The round in flight; rounds never overlap. */
  private inFlight: Promise<number> | undefined;
  private wakeAgain = false;
  private failures = 0;
  private lastPrune = 0;

  constructor(options: OutboxRelayOptions) {
    this.dataSource = options.dataSource;
    this.bus = options.bus;
    for (const def of options.events ?? ALL_EVENT_DEFS) {
      const key = eventKey(def);
      const seen = this.events.get(key);
      if (seen && seen !== def) throw new Error(`OutboxRelay: two event definitions share the key '${key}'`);
      this.events.set(key, def);
    }
    this.intervalMs = positive('intervalMs', options.intervalMs ?? 1000);
    this.nudgeDelayMs = positive('nudgeDelayMs', options.nudgeDelayMs ?? 50);
    this.batchSize = positive('batchSize', options.batchSize ?? 500);
    this.maxBackoffMs = positive('maxBackoffMs', options.maxBackoffMs ?? 30_000);
    this.retentionMs = positive('retentionMs', options.retentionMs ?? 3600_000);
    this.pruneIntervalMs = positive('pruneIntervalMs', options.pruneIntervalMs ?? 60_000);
    this.logger = options.logger ?? SILENT_LOGGER;
    this.schema = schemaOf(this.dataSource);
    this.table = qualifiedTable(this.schema, 'outbox');
  }

  /** Starts publishing in the background: a round now, then every interval (longer after failures). */
  start(): void {
    if (this.running) return;
    this.running = true;
    setRunningRelay(this.dataSource, this);
    this.schedule(0);
  }

  /** Stops the background rounds and waits for the one in flight. */
  async stop(): Promise<void> {
    this.running = false;
    clearRunningRelay(this.dataSource, this);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.inFlight) await this.inFlight.catch(() => undefined);
  }

  /** Wakes the relay now, e.g. right after committing a transaction that enqueued events. */
  notify(): void {
    this.wake(0);
  }

  /**
   * Like notify(), but lets the writes of the next few milliseconds join the round: a round
   * within `nudgeDelayMs`, unless one is already due sooner or in flight (then right after it).
   */
  nudge(): void {
    this.wake(this.nudgeDelayMs);
  }

  private wake(withinMs: number): void {
    if (!this.running || this.failures > 0) return; // while failing, the backoff decides
    if (this.inFlight) {
      this.wakeAgain = true;
      return;
    }
    if (this.dueAt <= Date.now() + withinMs) return;
    this.schedule(withinMs);
  }

  /**
   * Publishes everything pending now (after the round in flight, if any) and returns how many
   * rows this call published. Rejects with the bus's error if a publish fails.
   */
  async flush(): Promise<number> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
    return this.runRound();
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.dueAt = Date.now() + delayMs;
    this.timer = setTimeout(() => void this.tick(), delayMs);
    // Never the reason a process stays alive: shutdown calls stop() anyway.
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    this.dueAt = Number.POSITIVE_INFINITY;
    let delay = this.intervalMs;
    try {
      // A flush() may own the round in flight; go after it rather than beside it.
      while (this.inFlight) await this.inFlight.catch(() => undefined);
      if (!this.running) return;
      this.wakeAgain = false;
      await this.runRound();
      this.failures = 0;
      if (this.wakeAgain) delay = 0;
    } catch (err) {
      this.failures += 1;
      delay = Math.min(this.maxBackoffMs, this.intervalMs * 2 ** Math.min(this.failures, 16));
      const rows = err instanceof UnacknowledgedRows ? err.rows : {};
      this.logger.error({ schema: this.schema, err: errorMessage(err), ...rows, failures: this.failures, retryInMs: delay }, 'outbox relay round failed; will retry');
    }
    this.schedule(delay);
  }

  private runRound(): Promise<number> {
    const round = this.publishPending().finally(() => {
      if (this.inFlight === round) this.inFlight = undefined;
    });
    this.inFlight = round;
    return round;
  }

  private async publishPending(): Promise<number> {
    const keys = [...this.events.keys()];
    let published = 0;
    for (;;) {
      const { rows } = await runStatement<OutboxRow>(
        this.dataSource,
        `SELECT id, seq, event, payload, headers FROM ${this.table}
          WHERE sent_at IS NULL AND failed_at IS NULL AND event = ANY($1::text[])
          ORDER BY seq LIMIT $2`,
        [keys, this.batchSize],
      );
      if (rows.length === 0) break;
      // The whole batch goes out at once (the bus keeps the order on its connection) and the
      // acknowledgements are awaited together: one round trip per batch, not one per row.
      const results = await Promise.allSettled(rows.map((row) => this.publishRow(row)));
      const sent = rows.filter((_, i) => results[i]!.status === 'fulfilled' && (results[i] as PromiseFulfilledResult<boolean>).value).map((r) => r.id);
      // Mark what went out even when another row failed, so it is not published again.
      if (sent.length > 0) {
        await runStatement(this.dataSource, `UPDATE ${this.table} SET sent_at = now() WHERE id = ANY($1::text[]) AND sent_at IS NULL`, [sent]);
        published += sent.length;
      }
      const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ row: rows[i]!, reason: r.reason as unknown }] : []));
      if (failed.length > 0) {
        const first = failed[0]!;
        // One log line for the round (below) says which rows the bus did not acknowledge, and why.
        throw new UnacknowledgedRows(first.reason, { failed: failed.length, published: sent.length, first_failed: { id: first.row.id, event: first.row.event, seq: first.row.seq } });
      }
      if (rows.length < this.batchSize) break;
    }
    if (published > 0) this.logger.debug({ schema: this.schema, published }, 'outbox rows published');
    await this.pruneIfDue();
    return published;
  }

  /** True when published; false when set aside for good; throws to end the round. */
  private async publishRow(row: OutboxRow): Promise<boolean> {
    const def = this.events.get(row.event)!;
    // Publish inside the trace of the request that wrote the row, so the trace follows the event.
    const parent = row.headers?.traceparent ? propagation.extract(ROOT_CONTEXT, row.headers) : ROOT_CONTEXT;
    try {
      await context.with(parent, () => this.bus.publish(def, row.payload as PayloadOf<typeof def>, { id: row.id }));
      return true;
    } catch (err) {
      if (err instanceof StackError && PERMANENT_CODES.has(err.code)) {
        this.logger.error({ schema: this.schema, id: row.id, event: row.event, seq: row.seq, err: err.message }, 'the bus refused an outbox event for good; set aside (failed_at) so the rest can go');
        await runStatement(this.dataSource, `UPDATE ${this.table} SET failed_at = now(), last_error = $2 WHERE id = $1`, [row.id, err.message.slice(0, 2000)]);
        return false;
      }
      throw err;
    }
  }

  private async pruneIfDue(): Promise<void> {
    const now = Date.now();
    if (now - this.lastPrune < this.pruneIntervalMs) return;
    this.lastPrune = now;
    const deleted = await this.prune();
    if (deleted > 0) this.logger.debug({ schema: this.schema, deleted }, 'sent outbox rows pruned');
  }

  /** Deletes rows sent longer ago than the retention, in batches of short statements. */
  async prune(): Promise<number> {
    let total = 0;
    for (;;) {
      const { affected } = await runStatement(
        this.dataSource,
        `DELETE FROM ${this.table} WHERE id IN (
           SELECT id FROM ${this.table} WHERE sent_at < now() - make_interval(secs => $1) LIMIT $2
         )`,
        [this.retentionMs / 1000, this.batchSize * 10],
      );
      total += affected;
      if (affected < this.batchSize * 10) return total;
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`OutboxRelay: option '${name}' must be a positive number, got ${String(value)}`);
  return value;
}

/** A round's rows the bus did not acknowledge: the first one's cause, and which rows. */
class UnacknowledgedRows extends Error {
  constructor(
    cause: unknown,
    readonly rows: { failed: number; published: number; first_failed: { id: string; event: string; seq: number | string } },
  ) {
    super(`the bus did not acknowledge ${rows.failed} outbox row(s): ${errorMessage(cause)}`);
  }
}
