/**
 * Vacuuming and analysing for the embedded Postgres. PGlite runs Postgres as a single backend
 * with no autovacuum worker, so:
 * - the dead row versions every UPDATE and DELETE leaves (an outbox row marked sent, a drop-off
 *   deposited and collected, a pruned inbox) were never reclaimed: tables and their indexes grew
 *   for as long as `npm start` ran, and so did the statements that walk them;
 * - no table was ever analysed, and a prepared statement's generic plan (the embedded server
 *   prepares each statement text once, statement-cache.ts) was made from what a table looked
 *   like when the plan was first made. A plan made over a nearly empty table scans it whole, and
 *   keeps doing so as the table grows: the audit log's append, which probes the entries by id,
 *   went from 3 ms to 140 ms a batch within a minute of load. ANALYZE gives the planner the
 *   table's real size and invalidates the plans that depend on it, so they are made again.
 * This does what autovacuum would: every interval it asks the statistics which tables hold many
 * dead rows or many rows changed since they were last analysed (autovacuum's own rule: 50 plus
 * a tenth of the table) and vacuums or analyses those, one table per statement, so the one
 * backend is never held for long.
 */
import { Client } from 'pg';

import type { InProcessSocket } from './in-process-socket';
import { errorMessage, type PersistenceLogger } from './persistence-logger';

/** Dead rows a table must hold to be vacuumed. */
const DEAD_ROWS_THRESHOLD = 1000;
/** Rows changed since the last ANALYZE for a table to be analysed: this plus a tenth of the table (autovacuum's defaults). */
const ANALYZE_BASE_THRESHOLD = 50;
const ANALYZE_SCALE_FACTOR = 0.1;
/**
 * ANALYZE samples 300 rows per point of the statistics target: the default (100) made analysing
 * the outbox (jsonb payloads, thousands of changes a second under load) hold the one backend
 * for 150–330 ms a round. A tenth of that sample still gives the planner the table's size and
 * coarse distributions, which is what the embedded workload's plans turn on.
 */
const STATISTICS_TARGET = 10;
/** Tables seen to per round at most (the most work first). */
const TABLES_PER_ROUND = 8;

const DUE_TABLES = `
  SELECT name, dead >= $1 AS vacuum, changed >= $2 + $3 * rows AS analyze
  FROM (SELECT format('%I.%I', s.schemaname, s.relname) AS name, s.n_dead_tup AS dead, s.n_mod_since_analyze AS changed, greatest(c.reltuples, 0) AS rows
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid) t
  WHERE dead >= $1 OR changed >= $2 + $3 * rows
  ORDER BY greatest(dead, changed) DESC LIMIT ${TABLES_PER_ROUND}`;

/** What a round did: the tables vacuumed and those analysed (a table may be in both). */
export interface MaintenanceRound {
  vacuumed: string[];
  analyzed: string[];
}

export interface EmbeddedVacuum {
  /** One round now (tests). */
  runOnce(): Promise<MaintenanceRound>;
  stop(): Promise<void>;
}

/** `intervalMs` 0: no rounds but those asked for with runOnce(). */
export function startEmbeddedVacuum(url: string, stream: () => InProcessSocket, intervalMs: number, logger: PersistenceLogger): EmbeddedVacuum {
  let client: Client | undefined;
  let running: Promise<MaintenanceRound> | undefined;
  let stopped = false;
  let failing = false;

  const round = async (): Promise<MaintenanceRound> => {
    if (!client) {
      const c = new Client({ connectionString: url, stream, application_name: 'stack-embedded-vacuum' });
      c.on('error', () => undefined); // the server closing: the next round reconnects
      await c.connect();
      client = c;
    }
    // Statistics reach the views a second after the transactions that made them; ask for them now.
    await client.query('SELECT pg_stat_force_next_flush()');
    const { rows } = await client.query<{ name: string; vacuum: boolean; analyze: boolean }>(DUE_TABLES, [DEAD_ROWS_THRESHOLD, ANALYZE_BASE_THRESHOLD, ANALYZE_SCALE_FACTOR]);
    const done: MaintenanceRound = { vacuumed: [], analyzed: [] };
    for (const { name, vacuum, analyze } of rows) {
      if (stopped) break;
      if (vacuum) {
        await client.query(`VACUUM ${name}`);
        done.vacuumed.push(name);
      }
      if (analyze && !stopped) {
        // One exchange: the smaller sample is this statement's alone (PGlite's one session is every
        // connection's). Should ANALYZE fail, the block is left aborted and the round fails: the
        // connection is closed, the server rolls it back, and the next round starts afresh.
        await client.query(`BEGIN; SET LOCAL default_statistics_target = ${STATISTICS_TARGET}; ANALYZE ${name}; COMMIT`);
        done.analyzed.push(name);
      }
    }
    return done;
  };

  const runOnce = (): Promise<MaintenanceRound> => {
    running ??= round()
      .then(
        (done) => {
          if (failing) logger.info({}, 'embedded Postgres: vacuum/analyze rounds work again');
          failing = false;
          if (done.vacuumed.length || done.analyzed.length) logger.debug({ ...done }, 'embedded Postgres: vacuumed and analysed');
          return done;
        },
        (err: unknown) => {
          if (!failing && !stopped) logger.warn({ err: errorMessage(err) }, 'embedded Postgres: a vacuum/analyze round failed; the next round retries');
          failing = true;
          const c = client;
          client = undefined;
          void c?.end().catch(() => undefined);
          return { vacuumed: [], analyzed: [] };
        },
      )
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  const timer =
    intervalMs > 0
      ? setInterval(() => {
          if (!stopped && !running) void runOnce();
        }, intervalMs)
      : undefined;
  timer?.unref();

  return {
    runOnce,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
