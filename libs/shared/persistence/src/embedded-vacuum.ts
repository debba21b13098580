/**
 * Vacuuming for the embedded Postgres. PGlite runs Postgres as a single backend with no
 * autovacuum worker, so the dead row versions every UPDATE and DELETE leaves (an outbox row
 * marked sent, a drop-off deposited and collected, a pruned inbox) were never reclaimed: tables
 * and their indexes grew for as long as `npm start` ran, and so did the statements that walk
 * them. This does what
 * autovacuum would: every interval it asks the statistics which tables hold many dead rows and
 * vacuums those, one table per statement, so the one backend is never held for long.
 */
import { Client } from 'pg';

import type { InProcessSocket } from './in-process-socket';
import { errorMessage, type PersistenceLogger } from './persistence-logger';

/** Dead rows a table must hold to be vacuumed. */
const DEAD_ROWS_THRESHOLD = 1000;
/** Tables vacuumed per round at most (the most dead rows first). */
const TABLES_PER_ROUND = 8;

const DUE_TABLES = `SELECT format('%I.%I', schemaname, relname) AS name FROM pg_stat_user_tables WHERE n_dead_tup >= $1 ORDER BY n_dead_tup DESC LIMIT ${TABLES_PER_ROUND}`;

export interface EmbeddedVacuum {
  /** One round now (tests): the tables vacuumed. */
  runOnce(): Promise<string[]>;
  stop(): Promise<void>;
}

/** `intervalMs` 0: no rounds but those asked for with runOnce(). */
export function startEmbeddedVacuum(url: string, stream: () => InProcessSocket, intervalMs: number, logger: PersistenceLogger): EmbeddedVacuum {
  let client: Client | undefined;
  let running: Promise<string[]> | undefined;
  let stopped = false;
  let failing = false;

  const round = async (): Promise<string[]> => {
    if (!client) {
      const c = new Client({ connectionString: url, stream, application_name: 'stack-embedded-vacuum' });
      c.on('error', () => undefined); // the server closing: the next round reconnects
      await c.connect();
      client = c;
    }
    // Statistics reach the views a second after the transactions that made them; ask for them now.
    await client.query('SELECT pg_stat_force_next_flush()');
    const { rows } = await client.query<{ name: string }>(DUE_TABLES, [DEAD_ROWS_THRESHOLD]);
    const done: string[] = [];
    for (const { name } of rows) {
      if (stopped) break;
      await client.query(`VACUUM ${name}`);
      done.push(name);
    }
    return done;
  };

  const runOnce = (): Promise<string[]> => {
    running ??= round()
      .then(
        (done) => {
          if (failing) logger.info({}, 'embedded Postgres: vacuuming works again');
          failing = false;
          if (done.length) logger.debug({ tables: done }, 'embedded Postgres: vacuumed');
          return done;
        },
        (err: unknown) => {
          if (!failing && !stopped) logger.warn({ err: errorMessage(err) }, 'embedded Postgres: vacuuming failed; the next round retries');
          failing = true;
          const c = client;
          client = undefined;
          void c?.end().catch(() => undefined);
          return [];
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
