import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Client, Pool } from 'pg';

import { inProcessStream, startEmbeddedPostgres } from './embedded-postgres';
import { InProcessSocket } from './in-process-socket';
import { createServiceDataSource } from './service-data-source';
import { queryMessage, syncMessage } from './pg-wire';
import { startPgliteHost, type PgliteHost } from './pglite-host';
import { startTestEmbeddedPostgres, type TestEmbeddedPostgres } from './testing/embedded-postgres.test-helper';

describe('startEmbeddedPostgres', () => {
  it('creates its data dir, keeps the data across a clean close and a restart on the same dir', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'stack-pglite-')), 'nested', 'data');
    try {
      const first = await startEmbeddedPostgres({ dataDir });
      expect(first.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
      expect(existsSync(join(dataDir, 'pgdata', 'PG_VERSION'))).toBe(true);
      const writer = new Client({ connectionString: first.url });
      await writer.connect();
      await writer.query('CREATE TABLE kept (id int PRIMARY KEY, note text)');
      await writer.query('INSERT INTO kept VALUES ($1, $2), ($3, $4)', [1, 'one', 2, 'two']);
      await writer.end();
      await first.close();

      const second = await startEmbeddedPostgres({ dataDir });
      const reader = new Client({ connectionString: second.url });
      await reader.connect();
      const { rows } = await reader.query('SELECT id, note FROM kept ORDER BY id');
      await reader.end();
      await second.close();
      expect(rows).toEqual([
        { id: 1, note: 'one' },
        { id: 2, note: 'two' },
      ]);
    } finally {
      rmSync(join(dataDir, '..', '..'), { recursive: true, force: true });
    }
  });
});

describe('a new cluster (PGlite initdb)', () => {
  it('is created by a worker of its own that exits, so the process does not keep initdb’s memory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stack-initdb-'));
    const pgdata = join(dir, 'pgdata');
    let host: PgliteHost | undefined;
    try {
      const before = process.memoryUsage().rss;
      host = await startPgliteHost(pgdata);
      const grown = (process.memoryUsage().rss - before) / 2 ** 20;
      expect(existsSync(join(pgdata, 'PG_VERSION'))).toBe(true);
      // One open PGlite is ~300–450 MiB; keeping the initdb instance as well made it ~870.
      expect(grown).toBeLessThan(620);
      expect((await host.exec(queryMessage("SELECT 'answer-' || (41 + 1)"))).output.toString('latin1')).toContain('answer-42');
      await host.close();
      // The second start opens the existing cluster directly.
      host = await startPgliteHost(pgdata);
      expect((await host.exec(queryMessage("SELECT 'again-' || (6 * 7)"))).output.toString('latin1')).toContain('again-42');
    } finally {
      await host?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('in-process connections to the embedded server', () => {
  it('are offered for this process’s own servers only, and while they run', async () => {
    const pg = await startTestEmbeddedPostgres();
    try {
      expect(inProcessStream(pg.url)).toBeInstanceOf(Function);
      expect(inProcessStream(pg.url.replace(/:\d+\//, ':1/'))).toBeUndefined();
      expect(inProcessStream('postgres://postgres@127.0.0.1:5432/postgres')).toBeUndefined();
      // A data source given the server's URL connects in memory; the URL still works over TCP for anyone else.
      const ds = createServiceDataSource({ service: 'audit', url: pg.url, entities: [], migrations: [] });
      expect((ds.options as { extra?: { stream?: unknown } }).extra?.stream).toBeInstanceOf(Function);
      await ds.initialize();
      try {
        const runner = ds.createQueryRunner();
        const client = (await runner.connect()) as { connection: { stream: unknown } };
        expect(client.connection.stream).toBeInstanceOf(InProcessSocket);
        await expect(runner.query('SELECT $1::int + 1 AS n', [41])).resolves.toEqual([{ n: 42 }]);
        await runner.release();
      } finally {
        await ds.destroy();
      }
      const tcp = new Client({ connectionString: pg.url });
      await tcp.connect();
      expect((tcp as unknown as { connection: { stream: unknown } }).connection.stream).not.toBeInstanceOf(InProcessSocket);
      await tcp.end();
    } finally {
      await pg.dispose();
    }
    expect(inProcessStream(pg.url)).toBeUndefined();
  });

  it('end when the server closes: a connected client sees its connection go, nothing hangs', async () => {
    const pg = await startTestEmbeddedPostgres();
    const client = new Client({ connectionString: pg.url, stream: inProcessStream(pg.url)! });
    await client.connect();
    const ended = new Promise<void>((resolve) => client.on('end', () => resolve()));
    client.on('error', () => undefined);
    await pg.dispose();
    await ended;
    await expect(client.query('SELECT 1')).rejects.toThrow();
  });
});

describe('vacuuming the embedded Postgres (PGlite has no autovacuum)', () => {
  it('vacuums the tables that hold many dead rows, on its own connection outside maxConnections', async () => {
    const pg = await startTestEmbeddedPostgres({ maxConnections: 1, vacuumIntervalMs: 0 });
    const client = new Client({ connectionString: pg.url, stream: inProcessStream(pg.url)! });
    try {
      await client.connect();
      await client.query('CREATE TABLE churn (id int PRIMARY KEY, n int NOT NULL)');
      await client.query('CREATE TABLE calm (id int PRIMARY KEY)');
      await client.query('INSERT INTO churn SELECT g, 0 FROM generate_series(1, 1500) g');
      await client.query('INSERT INTO calm SELECT g FROM generate_series(1, 1500) g');
      await client.query('UPDATE churn SET n = n + 1');
      await client.query('UPDATE churn SET n = n + 1');
      // Both tables changed enough to be analysed; only churn has dead rows to vacuum.
      expect(await pg.vacuumNow()).toEqual({ vacuumed: ['public.churn'], analyzed: ['public.churn', 'public.calm'] });
      const { rows } = await client.query<{ relname: string; vacuum_count: string }>(`SELECT relname, vacuum_count FROM pg_stat_user_tables WHERE relname IN ('churn', 'calm') ORDER BY relname`);
      expect(rows).toEqual([
        { relname: 'calm', vacuum_count: '0' },
        { relname: 'churn', vacuum_count: '1' },
      ]);
      // Nothing left to do; and the one client slot was never the vacuum's.
      expect(await pg.vacuumNow()).toEqual({ vacuumed: [], analyzed: [] });
      await expect(client.query('SELECT sum(n)::int AS s FROM churn')).resolves.toMatchObject({ rows: [{ s: 3000 }] });
    } finally {
      await client.end();
      await pg.dispose();
    }
  });

  it('analyses a table that grew, so a prepared statement planned while it was empty stops scanning it whole', async () => {
    // The shape of the audit log's append: does any of these ids exist yet?
    const pg = await startTestEmbeddedPostgres({ vacuumIntervalMs: 0 });
    const client = new Client({ connectionString: pg.url, stream: inProcessStream(pg.url)! });
    const plan = async () => ((await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN EXECUTE probe(ARRAY['k1', 'k2'])`)).rows.map((r) => r['QUERY PLAN']).join('\n'));
    try {
      await client.connect();
      await client.query('CREATE TABLE grows (id text PRIMARY KEY, body text NOT NULL)');
      await client.query('PREPARE probe(text[]) AS SELECT NOT EXISTS (SELECT 1 FROM grows WHERE id = ANY($1)) AS fresh');
      // Past five runs Postgres settles on a generic plan, made from the table as it is now: empty.
      for (let i = 0; i < 8; i++) await client.query(`EXECUTE probe(ARRAY['k${i}'])`);
      await client.query(`INSERT INTO grows SELECT 'k' || g, repeat('x', 200) FROM generate_series(1, 20000) g`);
      expect(await plan()).toMatch(/Seq Scan on grows/);
      expect((await pg.vacuumNow()).analyzed).toEqual(['public.grows']);
      const after = await plan();
      expect(after).not.toMatch(/Seq Scan/);
      expect(after).toMatch(/Index Only Scan using grows_pkey/);
    } finally {
      await client.end();
      await pg.dispose();
    }
  });
});

describe('statements prepared once in the embedded server for every connection', () => {
  it('parses a statement text once however many connections send it, and every answer stays right', async () => {
    const pg = await startTestEmbeddedPostgres();
    const pool = new Pool({ connectionString: pg.url, stream: inProcessStream(pg.url)!, max: 8 });
    try {
      await pool.query('CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, note text)');
      await pool.query('INSERT INTO counters SELECT g, 0, NULL FROM generate_series(1, 20) g');
      const bump = 'UPDATE counters SET n = n + $2, note = $3 WHERE id = $1 RETURNING id, n, note';
      await Promise.all(
        Array.from({ length: 400 }, async (_, i) => {
          const { rows } = await pool.query<{ id: number; note: string }>(bump, [(i % 20) + 1, 1, `call ${i}`]);
          expect(rows).toEqual([expect.objectContaining({ id: (i % 20) + 1, note: `call ${i}` })]);
        }),
      );
      const { rows: totals } = await pool.query<{ sum: string }>('SELECT sum(n) AS sum FROM counters');
      expect(totals[0]!.sum).toBe('400');
      const { rows: prepared } = await pool.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements');
      expect(prepared.filter((p) => p.statement === bump)).toHaveLength(1);
      // A failure inside a prepared statement reaches its caller, and the statement keeps serving.
      await expect(pool.query('SELECT 10 / $1::int AS x', [0])).rejects.toThrow(/division by zero/);
      await expect(pool.query('SELECT 10 / $1::int AS x', [5])).resolves.toMatchObject({ rows: [{ x: 2 }] });
      // The table changes shape: the same SELECT * sees the new column, from any connection.
      const all = 'SELECT * FROM counters WHERE id = $1';
      await Promise.all(Array.from({ length: 8 }, (_, i) => pool.query(all, [i + 1])));
      await pool.query('ALTER TABLE counters ADD COLUMN added text DEFAULT $$new$$');
      const after = await Promise.all(Array.from({ length: 8 }, (_, i) => pool.query(all, [i + 1])));
      for (const r of after) expect(r.rows[0]).toMatchObject({ added: 'new' });
    } finally {
      await pool.end();
      await pg.dispose();
    }
  });
});

const transports: Array<[string, (url: string) => { connectionString: string; stream?: () => InProcessSocket }]> = [
  ['over TCP', (url) => ({ connectionString: url })],
  ['in process', (url) => ({ connectionString: url, stream: inProcessStream(url)! })],
];

describe.each(transports)('embedded Postgres with many connections, %s', (_transport, connection) => {
  let pg: TestEmbeddedPostgres;
  let pool: Pool;

  beforeAll(async () => {
    pg = await startTestEmbeddedPostgres();
    pool = new Pool({ ...connection(pg.url), max: 12 });
    await pool.query('CREATE TABLE items (id int PRIMARY KEY, owner text NOT NULL)');
  });

  afterAll(async () => {
    await pool?.end();
    await pg?.dispose();
  });

  it('never mixes up concurrent parameterised queries from different connections', async () => {
    // pg sends Parse/Bind/Execute/Sync per query; interleaving two connections' messages on
    // the one backend would bind one client's values to another's statement.
    const results = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        pool.query<{ n: number; s: string }>(i % 2 ? 'SELECT $1::int * 3 AS n, $2::text AS s' : 'SELECT $1::int + 1000 AS n, upper($2::text) AS s', [i, `v${i}`]),
      ),
    );
    results.forEach((r, i) => expect(r.rows[0]).toEqual(i % 2 ? { n: i * 3, s: `v${i}` } : { n: i + 1000, s: `V${i}` }));
  });

  it('serialises whole transactions: a second connection waits, then sees only committed work', async () => {
    const a = await pool.connect();
    const b = await pool.connect();
    try {
      await a.query('BEGIN');
      await a.query('INSERT INTO items VALUES (1, $1)', ['a']);
      let bDone = false;
      const bRead = b.query<{ n: string }>('SELECT count(*) AS n FROM items').then((r) => {
        bDone = true;
        return r.rows[0]!.n;
      });
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(bDone).toBe(false);
      await a.query('INSERT INTO items VALUES (2, $1)', ['a']);
      await a.query('ROLLBACK');
      expect(await bRead).toBe('0');
    } finally {
      a.release();
      b.release();
    }
  });

  it('rolls back what a vanished connection left open and frees the backend for the others', async () => {
    const doomed = new Client(connection(pg.url));
    await doomed.connect();
    await doomed.query('BEGIN');
    await doomed.query('INSERT INTO items VALUES (10, $1)', ['doomed']);
    const waiting = pool.query<{ n: string }>("SELECT count(*) AS n FROM items WHERE owner = 'doomed'");
    // As a crashed process would: the socket just goes away.
    (doomed as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    doomed.on('error', () => undefined);
    const { rows } = await waiting;
    expect(rows[0]!.n).toBe('0');
  });

  it('keeps serving others when one connection fails inside the extended protocol', async () => {
    const failing = Promise.allSettled(Array.from({ length: 20 }, (_, i) => pool.query('SELECT 1 / $1::int AS x', [i % 2])));
    const fine = Promise.all(Array.from({ length: 20 }, (_, i) => pool.query<{ x: number }>('SELECT $1::int AS x', [i])));
    const settled = await failing;
    expect(settled.filter((s) => s.status === 'rejected')).toHaveLength(10);
    expect((await fine).map((r) => r.rows[0]!.x)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('warns when one connection holds the backend while others wait (the deadlock of the one-process mode)', async () => {
    const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }) };
    const watched = await startTestEmbeddedPostgres({ stallWarningMs: 200, logger });
    const holder = new Client(connection(watched.url));
    const waiter = new Client(connection(watched.url));
    try {
      await Promise.all([holder.connect(), waiter.connect()]);
      await holder.query('BEGIN');
      // What deadlocks: inside a transaction, awaiting work on another connection.
      const blocked = waiter.query('SELECT 1 AS x');
      await new Promise((resolve) => setTimeout(resolve, 1300));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.msg).toMatch(/deadlock/);
      expect(warnings[0]!.obj).toMatchObject({ waiting: 1 });
      await holder.query('COMMIT');
      await expect(blocked).resolves.toMatchObject({ rows: [{ x: 1 }] });
    } finally {
      await Promise.all([holder.end(), waiter.end()]);
      await watched.dispose();
    }
  });

  it('refuses connections beyond maxConnections with a Postgres error', async () => {
    const small = await startTestEmbeddedPostgres({ maxConnections: 1 });
    const one = new Client(connection(small.url));
    const two = new Client(connection(small.url));
    try {
      await one.connect();
      await expect(two.connect()).rejects.toThrow(/too many connections/);
      await expect(one.query('SELECT 1 AS x')).resolves.toMatchObject({ rows: [{ x: 1 }] });
    } finally {
      await one.end();
      await small.dispose();
    }
  });
});

describe('PGlite host: several connections in one trip (execMany)', () => {
  let host: PgliteHost;
  let dir: string;
  const statusOf = (out: Buffer) => String.fromCharCode(out[out.length - 1]!);
  const rowsText = (out: Buffer) => out.toString('latin1');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stack-pglite-host-'));
    host = await startPgliteHost(join(dir, 'pgdata'));
    await host.exec(queryMessage('CREATE TABLE t (n int)'));
  });
  afterAll(async () => {
    await host?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs idle-leaving exchanges back to back and stops at the first that opens a transaction', async () => {
    const { results, error } = await host.execMany([queryMessage('INSERT INTO t VALUES (1)'), queryMessage("SELECT 'first-answer'"), queryMessage('BEGIN'), queryMessage('INSERT INTO t VALUES (2)')]);
    expect(error).toBeUndefined();
    expect(results).toHaveLength(3);
    expect(results.map((r) => statusOf(r.output))).toEqual(['I', 'I', 'T']);
    expect(results.map((r) => r.inTransaction)).toEqual([false, false, true]);
    expect(rowsText(results[1]!.output)).toContain('first-answer');
    // The fourth input never ran: only the transaction's owner goes on.
    await host.exec(queryMessage('ROLLBACK'));
    const count = await host.exec(queryMessage('SELECT count(*)::text || \'-rows\' FROM t'));
    expect(rowsText(count.output)).toContain('1-rows');
  });

  it('stops after an unfinished exchange (no Sync yet): nothing after it runs until that connection finishes', async () => {
    const sql = Buffer.from('INSERT INTO t VALUES (9)\0', 'utf8');
    const parse = Buffer.concat([Buffer.from([0x50]), Buffer.alloc(4), Buffer.from([0]), sql, Buffer.from([0, 0])]);
    parse.writeInt32BE(parse.length - 1, 1);
    const { results, error } = await host.execMany([queryMessage('INSERT INTO t VALUES (3)'), parse, queryMessage('INSERT INTO t VALUES (4)')]);
    expect(error).toBeUndefined();
    expect(results).toHaveLength(2);
    // ParseComplete and no ReadyForQuery: the exchange goes on, so the run stops with it.
    expect([...results[1]!.output]).toEqual([0x31, 0, 0, 0, 4]);
    const synced = await host.exec(syncMessage());
    expect(statusOf(synced.output)).toBe('I');
    const count = await host.exec(queryMessage('SELECT count(*)::text || \'-rows\' FROM t'));
    expect(rowsText(count.output)).toContain('2-rows');
  });

  it('keeps every answer with its own connection when many run at once through the server', async () => {
    const pg = await startTestEmbeddedPostgres();
    const pool = new Pool({ connectionString: pg.url, max: 16 });
    try {
      await pool.query('CREATE TABLE c (id int PRIMARY KEY)');
      // Autocommit statements and whole transactions from 16 connections at once: batches form and
      // stop at each BEGIN; every answer must reach the connection that asked.
      const work = Array.from({ length: 160 }, async (_, i) => {
        if (i % 10 === 0) {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            await client.query('INSERT INTO c VALUES ($1)', [i]);
            const r = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM c WHERE id = $1', [i]);
            await client.query('COMMIT');
            return r.rows[0]!.n === 1 ? i : -1;
          } finally {
            client.release();
          }
        }
        const r = await pool.query<{ n: number }>('SELECT $1::int AS n', [i]);
        return r.rows[0]!.n;
      });
      expect(await Promise.all(work)).toEqual(Array.from({ length: 160 }, (_, i) => i));
      expect((await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM c')).rows[0]!.n).toBe(16);
    } finally {
      await pool.end();
      await pg.dispose();
    }
  });
});
